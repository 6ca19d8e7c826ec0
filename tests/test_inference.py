"""The generation engine and the Translator API, on a tiny model trained for two steps."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from umt_helpers import model_config

import umt.generate as gen
import umt.inference as inference
from umt.batch import translate_files
from umt.errors import UmtError
from umt.generate import ChunkPlan, plan_chunks, stitch
from umt.inference import GenerationPlan, Translator
from umt.inputs import read_input
from umt.model import UniversalTranslator
from umt.sampling import sample

SR = 16_000
# The WaveNet export shipped until 2026-12-01: its decoders follow the conditioning.
SHIPPED = Path(__file__).resolve().parent.parent / "umt" / "pretrained" / "wavenet_tiny.pt"


@pytest.fixture(scope="module")
def translator(tiny_export):
    # Short chunks so that a 0.3 s input has seams: 0.1 s chunks, 0.05 s warm-up, 10 ms fade.
    return Translator.load(tiny_export, "cpu", chunk_seconds=0.1, warmup_seconds=0.05,
                           fade_seconds=0.01)


def _melody(seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * 440 * t) * np.exp(-2 * (t % 0.1))).astype(np.float32)


def test_same_seed_same_output_other_seed_other_output(translator):
    wav = _melody(0.2)
    a, b = translator(wav, SR, "saw", seed=3), translator(wav, SR, "saw", seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, translator(wav, SR, "saw", seed=4))


@pytest.mark.parametrize("seconds,sr", [(0.2371, 16_000), (0.15, 44_100)])
def test_output_length_is_the_input_length_at_16k(translator, seconds, sr):
    wav = _melody(seconds, sr)
    out = translator(wav, sr, "sine", seed=0)
    assert out.shape == (round(wav.size * SR / sr),)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and out.abs().max() <= 1


def test_temperature_zero_is_greedy_and_ignores_the_seed(translator):
    wav = _melody(0.15)
    a = translator(wav, SR, "saw", seed=1, temperature=0)
    assert torch.equal(a, translator(wav, SR, "saw", seed=2, temperature=0))


def test_several_targets_run_the_encoder_once(translator, monkeypatch):
    calls = []
    encode = translator.model.encode_notes
    monkeypatch.setattr(translator.model, "encode_notes",
                        lambda x, notes=True: calls.append(x.shape) or encode(x, notes))
    wav = _melody(0.15)
    outs = translator.translate(wav, SR, ["saw", "sine"], seed=5)
    assert len(calls) == 1 and set(outs) == {"saw", "sine"}
    torch.testing.assert_close(outs["sine"], translator(wav, SR, "sine", seed=5))


def test_decode_many_gives_each_input_what_decode_gives_it_alone():
    # The shipped model: its decoders follow the conditioning, so a chunk fed another input's
    # frames would sample other classes (the two-step test model hardly listens to it).
    tr = Translator.load(SHIPPED, "cpu", domains=["piano"], min_chunk_seconds=0.1)
    # Chunked inputs of several lengths, and one short enough to be a single chunk of its own
    # length, so the batch mixes inputs and runs two groups of different steps.
    latents = [tr.encode(_melody(s), SR) for s in (0.5, 0.2, 0.77, 0.05)]
    assert len({tr.plan("piano", lat.length).chunks.steps for lat in latents}) == 2
    together = tr.decode_many(latents, "piano", seed=7)
    for latent, out in zip(latents, together, strict=True):
        alone = tr.decode(latent, "piano", seed=7)
        assert out.shape == alone.shape == (latent.length,)
        # Other noise or other conditioning frames would make nearly every sample differ;
        # float rounding in a differently sized batch may flip a draw now and then.
        assert (out == alone).float().mean() > 0.9


def test_frames_of_several_inputs_stay_in_their_own_span(tiny_cfg):
    dec = UniversalTranslator(tiny_cfg, ["a"]).decoders["a"]
    # Input 0: frames 0-2, input 1: frames 3-7 once packed end to end.
    packed = gen.Packed.of([{"z": torch.arange(3.0).view(1, 1, 3)},
                            {"z": torch.arange(3.0, 8.0).view(1, 1, 5)}])
    rows = torch.tensor([0, 0, 1, 1])
    starts = torch.tensor([-800, 1600, -800, 1600])  # a warm-up chunk and a later one each
    got = [gen.chunk_frame(dec, packed, rows, starts, f)["z"].flatten().tolist()
           for f in range(4)]
    # Frames before an input repeat its first frame, frames past its end its last one.
    assert got == [[0, 2, 3, 5], [0, 2, 3, 6], [1, 2, 4, 7], [2, 2, 5, 7]]


def test_chunked_and_unchunked_outputs_have_the_same_statistics(tiny_export):
    wav = _melody(0.5)
    whole = Translator.load(tiny_export, "cpu", chunk_seconds=float("inf"))(wav, SR, "saw")
    chunked = Translator.load(tiny_export, "cpu", chunk_seconds=0.1, warmup_seconds=0.05,
                              fade_seconds=0.01)(wav, SR, "saw")
    assert whole.shape == chunked.shape
    rms = lambda x: x.pow(2).mean().sqrt().item()  # noqa: E731
    assert 0.7 < rms(chunked) / rms(whole) < 1.4
    # Classes histogram (what the decoder samples) close in total variation.
    h = [torch.bincount(torch.bucketize(x, torch.linspace(-1, 1, 33)), minlength=34).float()
         for x in (whole, chunked)]
    assert 0.5 * (h[0] / h[0].sum() - h[1] / h[1].sum()).abs().sum() < 0.25


def test_default_warmup_covers_the_receptive_field_and_the_fade(tiny_export):
    tr = Translator.load(tiny_export, "cpu")
    dec = tr.model.decoders["saw"]
    gen_plan = tr.plan("saw", 10 * SR)
    plan, cap = gen_plan.chunks, gen_plan.batch
    assert plan.count > 1 and plan.count <= cap
    # Where a seam's crossfade starts, the chunk's state holds only its own samples.
    assert plan.warmup - plan.fade >= dec.receptive_field
    assert plan.warmup % dec.frame == 0 and plan.warmup < inference.MAX_AUTO_WARMUP
    explicit = Translator.load(tiny_export, "cpu", warmup_seconds=0.14).plan("saw", 10 * SR)
    explicit = explicit.chunks
    assert explicit.warmup == 2400  # 0.14 s (2240 samples) rounded up to 3 frames
    # A receptive field longer than the ceiling (paper: 4093 samples) gets the ceiling.
    paper = Translator(UniversalTranslator(model_config("paper"), ["a"]), "cpu")
    assert paper.plan("a", 10 * SR).chunks.warmup == inference.MAX_AUTO_WARMUP


def test_crossfade_keeps_the_power_of_independent_chunks():
    torch.manual_seed(0)
    plan = ChunkPlan(length=8000, chunk=1600, warmup=800, fade=400)
    audio = 0.1 * torch.randn(2000, plan.count, plan.steps)  # 2000 trials, power 0.01
    out = torch.stack([stitch(a, plan) for a in audio])  # (trials, length)
    power = out.pow(2).mean(0) / 0.01  # per position, relative
    seams = torch.cat([torch.arange(s - 400, s) for s in range(1600, 8000, 1600)])
    assert abs(power.mean().item() - 1) < 0.05
    assert abs(power[seams].mean().item() - 1) < 0.05  # no dip or bump at the seams


def test_plan_covers_the_output_in_whole_frames():
    for length in (1, 799, 800, 16_000, 123_457, 9_600_000):
        plan = plan_chunks(length, 800, max_batch=64)
        assert plan.count * plan.chunk >= length and plan.count <= 64
        assert plan.steps % 800 == 0 and plan.start(0) == -plan.warmup
    assert plan_chunks(5000, 800, 64, chunk=10**9).count == 1  # no chunking asked


def test_default_chunk_minimises_the_modelled_time():
    h = gen.STEP_COST_BATCH

    def cost(length: int, warmup: int, c: int) -> float:  # steps x (fixed + per-chunk) cost
        return (warmup + c) * (h + -(-length // c))

    for length, warmup, cap in [(64_000, 1600, 512), (960_000, 3200, 512), (960_000, 800, 16),
                                (9_600_000, 3200, 512)]:
        plan = plan_chunks(length, 800, cap, warmup=warmup, min_chunk=800)
        options = [c for c in range(800, length, 800) if -(-length // c) <= cap]
        best = min(cost(length, warmup, c) for c in options)
        assert plan.count <= cap and plan.warmup == warmup
        assert cost(length, warmup, plan.chunk) <= 1.02 * best, (length, warmup, cap)
    assert plan_chunks(64_000, 800, 512, warmup=1600, min_chunk=8000).chunk == 8000
    assert plan_chunks(64_000, 800, 512, warmup=0, min_chunk=0).chunk == 800  # no warm-up


def test_ten_minute_input_fits_a_24_gb_machine(monkeypatch):
    monkeypatch.setattr(gen, "available_memory", lambda device: 24 * 2**30)
    for name in ("paper", "release"):
        dec = UniversalTranslator(model_config(name), ["a"]).decoders["a"]
        cap = gen.max_batch(dec, 16_000 + 3200, torch.device("cpu"))
        plan = plan_chunks(600 * SR, dec.frame, cap)
        assert plan.count <= cap
        group = dec.bytes_per_stream(plan.steps) * min(cap, plan.count)
        assert group + plan.count * plan.steps * 4 < 8 * 2**30, name  # buffers + all uniforms


def test_sample_is_greedy_at_zero_and_follows_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(20_000, 1)
    assert (sample(logits, torch.rand(20_000), 0) == 2).all()
    counts = torch.bincount(sample(logits, torch.rand(20_000), 1.0), minlength=4).float()
    torch.testing.assert_close(counts / 20_000, torch.softmax(logits[0], 0), atol=0.015, rtol=0)


def test_windowed_encoder_equals_one_pass(translator, monkeypatch):
    monkeypatch.setattr(inference, "ENCODER_WINDOW_FRAMES", 2)
    wav = _melody(0.75)  # 15 frames: 8 windows
    z = translator.encode(wav, SR).z
    with torch.no_grad():
        ref = translator.model.encode(torch.from_numpy(wav)[None])
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("wav,msg", [(np.zeros(0), "empty"), (np.zeros(800), "silent"),
                                     (np.full(800, np.nan), "NaN")])
def test_bad_signals_are_user_errors(translator, wav, msg):
    with pytest.raises(UmtError, match=msg):
        translator(wav, SR, "saw")


def test_unknown_instrument_lists_the_known_ones(translator):
    with pytest.raises(UmtError, match="it has: saw, sine"):
        translator(_melody(0.1), SR, "piano")


def test_translator_is_exported_lazily():
    import subprocess
    import sys

    code = "import sys, umt; assert 'torch' not in sys.modules; umt.Translator; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "ok"


def test_plan_is_a_named_frozen_type(tiny_export):
    tr = Translator.load(tiny_export, "cpu", batch=5)
    plan = tr.plan("saw", 10 * SR)
    assert isinstance(plan, GenerationPlan) and isinstance(plan.chunks, ChunkPlan)
    assert plan.batch == 5 and plan.chunks.count <= 5  # the chunks fit one batch
    assert plan.chunks.count * plan.chunks.chunk >= plan.chunks.length == 10 * SR
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.batch = 6


def test_translate_files_packs_files_and_gives_each_what_decode_gives_alone(tmp_path,
                                                                           monkeypatch):
    # The shipped model, whose decoders follow the conditioning (see above); 0.1 s chunks and
    # 12 a batch, so the 4 files fill 2 packs of 2, one file at 44.1 kHz, one unreadable.
    tr = Translator.load(SHIPPED, "cpu", domains=["piano", "flute"], min_chunk_seconds=0.1,
                         batch=12)
    paths = []
    for k, (seconds, sr) in enumerate([(0.5, SR), (0.2, 44_100), (0.77, SR), (0.05, SR)]):
        sf.write(tmp_path / f"f{k}.wav", _melody(seconds, sr), sr)
        paths.append(tmp_path / f"f{k}.wav")
    (tmp_path / "bad.wav").write_text("not audio")
    jobs = [*paths[:2], tmp_path / "bad.wav", paths[2], (paths[3], ["flute"])]
    calls, real = [], Translator.decode_many
    monkeypatch.setattr(Translator, "decode_many", lambda self, lat, to, **kw: (
        calls.append((to, len(lat))) or real(self, lat, to, **kw)))
    seen = []
    results = list(translate_files(tr, jobs, ["piano", "flute"], seed=7, keep_input=True,
                                   progress=lambda pack, done, total: seen.append(pack)))
    assert calls == [("piano", 2), ("flute", 2), ("piano", 1), ("flute", 2)]
    assert [tuple(p.name for p in pack) for pack in dict.fromkeys(seen)] == [
        ("f0.wav", "f1.wav"), ("f2.wav", "f3.wav")]
    assert [(r.index, r.to) for r in results] == [
        (2, None), (0, "piano"), (1, "piano"), (0, "flute"), (1, "flute"),
        (3, "piano"), (3, "flute"), (4, "flute")]
    assert "cannot read audio" in str(results[0].error) and results[0].audio is None
    for r in results[1:]:
        wav, rate = read_input(r.src)
        assert r.rate == rate and np.array_equal(r.input, wav)
        alone = tr(wav, SR, r.to, seed=7).numpy()
        assert r.audio.dtype == np.float32 and np.array_equal(r.audio, alone), (r.src, r.to)


def test_a_bf16_encoder_stays_close_to_fp32(translator):
    wav = _melody(0.75)
    z32 = translator.encode(wav, SR).z
    bf16 = Translator(translator.model, "cpu", precision="bf16")
    assert bf16.bf16 and not translator.bf16
    z16 = bf16.encode(wav, SR).z
    assert z16.dtype == torch.float32 and z16.shape == z32.shape
    assert (z16 - z32).norm() / z32.norm() < 0.02
    with pytest.raises(UmtError, match="precision"):
        Translator(translator.model, "cpu", precision="fp16")
