"""The frame decoder kind: voices, streaming == one call, a training step, export, Translator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_labels import build  # noqa: F401, F811 - the session fixture: a data.synth build
from umt_helpers import model_config

from umt.checkpoint import atomic_save, export_state, load_export
from umt.inference import Translator
from umt.model import UniversalTranslator
from umt.nn.notes import labels_as_input
from umt.nn.voices import allocate

SR = 16_000


def frame_config():
    cfg = model_config("frame")
    cfg.encoder.channels, cfg.encoder.blocks, cfg.encoder.layers = 8, 1, 4
    cfg.frame.hidden, cfg.frame.harmonics, cfg.frame.noise_bands = 16, 8, 9
    return cfg


def _notes(batch: int, frames: int) -> torch.Tensor:
    """A melody per row: key 48 + row for 30 frames, then key 55 + row, restruck at frame 60."""
    active, onsets = torch.zeros(batch, 88, frames), torch.zeros(batch, 88, frames)
    for b in range(batch):
        active[b, 48 + b, :30] = 1
        active[b, 55 + b, 30:] = 1
        onsets[b, 48 + b, :1] = onsets[b, 55 + b, 30:31] = onsets[b, 55 + b, 60:61] = 1
    return labels_as_input(active, onsets)


def test_voices_keep_their_note_and_age_from_its_onset():
    active = np.zeros((1, 88, 6), bool)
    onsets = np.zeros((1, 88, 6), bool)
    active[0, 40, :4] = active[0, 47, 2:] = active[0, 52, 2:3] = active[0, 60, 2:3] = True
    onsets[0, 40, 0] = onsets[0, 47, 2] = onsets[0, 52, 2] = onsets[0, 60, 2] = True
    onsets[0, 47, 4] = True  # struck again while held
    v, _ = allocate(active, onsets, voices=2)
    assert v.keys[0, :, 0].tolist() == [40, 40, 40, 40, -1, -1]  # 40 keeps voice 0 to its end
    # Three new keys, one free voice: the highest (60) takes it; 47, left without a voice,
    # takes it when 60 ends (not an onset), and its restrike at frame 4 restarts its age.
    assert v.keys[0, :, 1].tolist() == [-1, -1, 60, 47, 47, 47]
    assert v.onset[0, :, 0].tolist() == [True, False, False, False, False, False]
    assert v.onset[0, :, 1].tolist() == [False, False, True, False, True, False]
    assert v.age[0, :4, 0].tolist() == [0, 1, 2, 3] and v.age[0, 2:, 1].tolist() == [0, 0, 0, 1]
    # Allocating in two chunks with the state carried gives the same voices.
    a, state = allocate(active[..., :3], onsets[..., :3], 2)
    b, _ = allocate(active[..., 3:], onsets[..., 3:], 2, state)
    assert np.array_equal(np.concatenate([a.keys, b.keys], 1), v.keys)
    assert np.array_equal(np.concatenate([a.age, b.age], 1), v.age)


@pytest.fixture(scope="module")
def model() -> UniversalTranslator:
    torch.manual_seed(0)
    return UniversalTranslator(frame_config(), ["a", "b"]).eval()


def _inputs(model, batch: int, seconds: float) -> dict:
    T = int(seconds * SR)
    x = 0.3 * torch.sin(2 * np.pi * 220 * torch.arange(T) / SR).repeat(batch, 1)
    return model.condition(x, notes=_notes(batch, -(-T // 160)))


def test_chunked_generation_equals_one_call(model):
    dec = model.decoders["a"]
    inputs = _inputs(model, 2, 1.0)
    noise = torch.randn(2, 100 * 160, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole, _ = dec.generate(inputs, 100, noise=noise)
        state, parts = None, []
        for f0, n in ((0, 35), (35, 40), (75, 25)):  # seams on latent frames (5 frames each)
            window = {k: v[..., f0 * 160 // dec.condition.spec(k).hop :] for k, v in inputs.items()}
            part, state = dec.generate(window, n, state, noise=noise[:, f0 * 160 : (f0 + n) * 160])
            parts.append(part)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-5, rtol=1e-4)


def test_output_has_the_notes_pitch(model):
    # An untrained decoder already plays its notes' partials: the spectrum of the first note's
    # steady part peaks at a harmonic of key 48 (A4, 440 Hz).
    dec = model.decoders["a"]
    inputs = _inputs(model, 1, 0.3)
    with torch.no_grad():
        audio, _ = dec.generate(inputs, 30, noise=torch.zeros(1, 30 * 160))
    spec = torch.fft.rfft(audio[0, 1600:4800] * torch.hann_window(3200)).abs()
    peak = float(spec.argmax()) * SR / 3200
    f0 = 440 * 2 ** ((48 + 21 - 69) / 12)
    assert min(abs(peak - k * f0) for k in range(1, 9)) < 10, peak


def test_a_training_step_moves_every_part(model, tmp_path):
    m = UniversalTranslator(frame_config(), ["a", "b"])
    T = 4000
    x = 0.3 * torch.sin(2 * np.pi * 330 * torch.arange(T) / SR).repeat(2, 1)
    z, logits = m.encode_notes(x)
    assert logits.shape == (2, 176, 25)
    inputs = m.condition(x, z, notes=_notes(2, 25))
    loss = m.decoders["b"].loss(x, inputs)
    loss.backward()
    dec = m.decoders["b"]
    for part in (dec.gru, dec.voice, dec.noise, dec.condition):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_export_round_trip_and_translator(model, tmp_path):
    path = tmp_path / "frame.pt"
    atomic_save(export_state(model), path)
    raw = torch.load(path, weights_only=True)
    assert raw["note_head"] is not None
    again = load_export(path)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    tr = Translator.load(path, "cpu", chunk_seconds=0.25)
    wav = 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(0.7 * SR)) / SR).astype(np.float32)
    out = tr(wav, SR, "a", seed=0)
    assert out.shape == (len(wav),) and torch.isfinite(out).all()
    whole = Translator.load(path, "cpu", chunk_seconds=100)(wav, SR, "a", seed=0)
    assert torch.equal(out, whole) or (out - whole).abs().max() < 1e-4  # chunks carry the state


def test_pitch_tracker_gives_the_notes(model, tmp_path):
    path = tmp_path / "frame.pt"
    atomic_save(export_state(model), path)
    tr = Translator.load(path, "cpu", pitch="tracker")
    t = np.arange(int(0.6 * SR)) / SR
    wav = np.where(t < 0.3, 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 523.25 * t))
    latent = tr.encode(wav.astype(np.float32), SR)
    notes = latent.inputs["notes"][0]  # (176, 60)
    a4, c5 = 69 - 21, 72 - 21
    assert notes[a4, 5:25].mean() > 0.9 and notes[c5, 35:55].mean() > 0.9
    assert notes[88 + c5, 28:33].sum() == 1  # one onset where the pitch changes
    out = tr.decode(latent, "a")
    assert out.shape == (len(wav),) and torch.isfinite(out).all()
    with pytest.raises(Exception, match="pitch must be one of head, tracker, chords, auto"):
        Translator.load(path, "cpu", pitch="crepe")


def test_trainer_runs_paired_labelled_steps_and_resumes(build, tmp_path):  # noqa: F811
    # The whole training path of the frame kind on a real data.synth build: paired targets,
    # note labels, the note head's loss, a checkpoint with the head, and resume.
    from umt.config import DataConfig, TrainConfig, TrainerConfig
    from umt.trainer import Trainer

    root, _ = build
    data = DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"), segment=1600,
                      batch_per_domain=1, val_segments=1, paired=0.5)
    trainer = TrainerConfig(max_steps=2, device="cpu", progress=False, checkpoint_every=2,
                            val_every=2, log_every=1)
    cfg = TrainConfig(model=frame_config(), data=data, trainer=trainer)
    tr = Trainer(cfg, tmp_path / "run")
    metrics = tr.fit()
    assert "notes/bce" in metrics and np.isfinite(metrics["loss/g"])
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2 and "note_head" in state
    cfg.trainer.max_steps = 3
    again = Trainer(cfg, tmp_path / "run")
    assert again.resume() and again.step == 2
    from umt.export import export

    export(tmp_path / "run", tmp_path / "run.pt")  # the export carries the note head
    head = load_export(tmp_path / "run.pt").note_head.state_dict()
    for k, v in again.model.note_head.state_dict().items():
        torch.testing.assert_close(head[k], v)
    assert Translator.load(tmp_path / "run.pt", "cpu").pitch == "head"
    export(tmp_path / "run", tmp_path / "tracked.pt", pitch="tracker", temperature=0.5)
    tracked = Translator.load(tmp_path / "tracked.pt", "cpu")  # the defaults picked on validation
    assert (tracked.pitch, tracked.temperature) == ("tracker", 0.5)
    assert Translator.load(tmp_path / "run.pt", "cpu").temperature == 1.0
    assert Translator.load(tmp_path / "tracked.pt", "cpu", pitch="head").pitch == "head"


def test_a_new_note_takes_a_voice_that_was_already_free():
    # Key 40 ends where key 45 starts: 45 must not take 40's voice in that very frame (the
    # synth would glide from 40 to 45); it takes the voice that was free before.
    active = np.zeros((1, 88, 4), bool)
    onsets = np.zeros((1, 88, 4), bool)
    active[0, 40, :2] = active[0, 45, 2:] = True
    onsets[0, 40, 0] = onsets[0, 45, 2] = True
    v, _ = allocate(active, onsets, voices=2)
    assert v.keys[0, :, 0].tolist() == [40, 40, -1, -1]
    assert v.keys[0, :, 1].tolist() == [-1, -1, 45, 45]


def test_render_under_bf16_autocast_matches_fp32(model):
    dec = model.decoders["a"]
    inputs = _inputs(model, 1, 0.3)
    noise = torch.zeros(1, 30 * 160)
    with torch.no_grad():
        ref, _ = dec.generate(inputs, 30, noise=noise)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = dec.generate(inputs, 30, noise=noise)
    # bf16 controls differ a little (GRU, heads); the partials must still be the same sines.
    err = (low.float() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()
    assert err < 0.1, float(err)


@pytest.mark.parametrize("pitch", ["head", "tracker", "auto"])
def test_translate_cli_with_a_frame_export(model, tmp_path, pitch, capsys):
    import soundfile as sf

    import translate

    path = tmp_path / "frame.pt"
    atomic_save(export_state(model), path)
    src = tmp_path / "in"
    src.mkdir()
    t = np.arange(int(0.5 * SR)) / SR
    for name, hz in (("x", 440.0), ("y", 330.0)):
        sf.write(src / f"{name}.wav", 0.3 * np.sin(2 * np.pi * hz * t), SR)
    code = translate.main([str(src), "--to", "a", "--model", str(path), "-o", str(tmp_path / "o"),
                           "--pitch", pitch, "-q"])
    assert code == 0, capsys.readouterr().err
    for name in ("x", "y"):
        out, sr = sf.read(tmp_path / "o" / f"{name}.a.wav")
        assert sr == SR and len(out) == len(t)


def test_pitch_tracker_on_a_model_without_notes_is_a_one_line_error(tiny_export):
    from umt.errors import UmtError

    with pytest.raises(UmtError, match="reads none"):
        Translator.load(tiny_export, "cpu", pitch="tracker")


def test_tracker_in_pieces_follows_the_whole_signal(monkeypatch):
    from umt import tracker

    t = np.arange(int(2.5 * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * np.where(t < 1.2, 440.0, 330.0) * t)).astype(np.float32)
    whole = tracker.track_pitch(wav)
    level = tracker.frame_db(wav, len(whole.f0))
    onsets = tracker.onset_frames(wav)
    monkeypatch.setattr(tracker, "TRACK_CHUNK", SR)  # 1 s pieces: two seams
    pieces = tracker.track_pitch(wav)
    np.testing.assert_allclose(tracker.frame_db(wav, len(whole.f0)), level, atol=1e-9)
    assert np.array_equal(tracker.onset_frames(wav), onsets)  # its one onset, far from a seam
    assert len(pieces.f0) == len(whole.f0) == len(wav) // 160 + 1
    near = np.abs(tracker.hz_to_midi(pieces.f0) - tracker.hz_to_midi(whole.f0)) == 0
    assert near[whole.voiced].mean() > 0.97  # the same notes but a frame or two at the seams


def test_tracker_restrikes_a_repeated_note():
    # The same A4 played twice with a gap-free re-attack: one key, two onsets.
    from umt.chords import tracked_notes

    t = np.arange(int(1.0 * SR)) / SR
    env = np.where(t < 0.5, np.exp(-6 * t), np.exp(-6 * (t - 0.5)))
    wav = (0.5 * env * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    notes = tracked_notes(wav, 100, "tracker")[0]
    onsets = np.flatnonzero(notes[88 + 48].numpy())
    assert len(onsets) == 2 and abs(onsets[1] - 50) <= 2, onsets


def test_tracking_every_other_frame_keeps_a_vibrato_melody():
    from umt import tracker

    t = np.arange(int(2.0 * SR)) / SR
    base = np.where(t < 0.7, 440.0, np.where(t < 1.3, 523.25, 392.0))  # three notes
    f = base * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 6 * t))  # 6 Hz vibrato, 30 cents deep
    wav = (0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)).astype(np.float32)
    fine, coarse = tracker.track_pitch(wav), tracker.track_pitch(wav, step=2)
    assert len(coarse.f0) == len(fine.f0) == len(wav) // 160 + 1
    both = fine.voiced & coarse.voiced
    assert both.sum() > 0.9 * fine.voiced.sum()
    cents = np.abs(1200 * np.log2(coarse.f0[both] / fine.f0[both]))
    assert np.percentile(cents, 95) < 15, np.percentile(cents, [50, 95, 100])
    assert np.mean(tracker.hz_to_midi(coarse.f0[both]) == tracker.hz_to_midi(fine.f0[both])) > 0.97
