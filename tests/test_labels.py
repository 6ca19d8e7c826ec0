"""Note labels (umt.labels) and paired, labelled batches (umt.pairs) on a tiny data.synth build."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import symusic
import torch

from tests._paired import require_fluidsynth
from umt.data import build_cache, cached_paths, open_cache
from umt.errors import UmtError
from umt.labels import HOP, KEYS, LOWEST, Notes, note_frames, read_notes
from umt.pairs import NOT_A_BUILD, PairedSampler

INSTRUMENTS = ("piano", "violin", "flute")
SEGMENT = 16_000
# Lead-in silence of each generated work: none on a frame boundary, so an off-by-a-frame shows.
LEAD_INS = (0.333, 0.517, 0.771)
LEAD_INS_FRAMES = {round(x * 100) for x in LEAD_INS}


def _write_work(path: Path, lead_in: float, seed: int) -> None:
    """A two-track work (melody over a bass line, both monophonic) starting at ``lead_in`` s."""
    from data.render import NoteEvent, notes_to_score

    rng = np.random.default_rng(seed)
    score = notes_to_score([])
    score.tracks.clear()
    for name, low, step in (("melody", 67, 0.3), ("bass", 43, 0.6)):
        t, notes = lead_in, []
        while t < lead_in + 3.5:
            notes.append(NoteEvent(t, t + step * 0.8, low + int(rng.integers(0, 12)), 90))
            t += step
        track = notes_to_score(notes).tracks[0]
        track.name = name
        score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> tuple[Path, Path]:
    """(data.synth build, its cache): 3 works x 3 pieces (texture, melody, bass) x 3 instruments."""
    require_fluidsynth()
    from data.instruments import parse_instruments, resolve_soundfonts
    from data.synth import BuildConfig, build_dataset

    tmp = tmp_path_factory.mktemp("labels")
    for i, lead in enumerate(LEAD_INS):
        _write_work(tmp / "mid" / f"w{i}.mid", lead, seed=i)
    cfg = BuildConfig(out=tmp / "data", instruments=parse_instruments(",".join(INSTRUMENTS)),
                      soundfonts=resolve_soundfonts("timgm6mb"), sources=[str(tmp / "mid")],
                      hours=0.0001, seed=0, voices="all", jobs=2, cache=tmp / "c")
    build_dataset(cfg)
    return tmp / "data", build_cache(tmp / "data", tmp / "cache", list(INSTRUMENTS), SEGMENT)


def _sampler(build, **kw) -> PairedSampler:
    root, cache = build
    args = dict(split="train", domains=list(INSTRUMENTS), segment=SEGMENT, batch_per_domain=4,
                seed=0, paired=0.5, augment=False, shift_semitones=0.5, silence_db=-50.0)
    return PairedSampler.from_build(root, cache, **(args | kw))


# --- note_frames -------------------------------------------------------------------------------


def test_note_frames_hand_made_window():
    # Window: samples 1600..2400 = 0.10..0.15 s, five 10 ms frames.
    notes = Notes(
        onset=np.array([0.05, 0.113, 0.13, 0.14, 0.15, 0.0, 0.1]),
        offset=np.array([0.125, 0.1305, 0.14, 0.2, 0.2, 0.1, 0.1]),
        pitch=np.array([60, 64, 67, 60, 108, 21, 72]),
    )
    active, onsets = note_frames(notes, start=1600, length=800)
    want_a, want_o = np.zeros((KEYS, 5), np.float32), np.zeros((KEYS, 5), np.float32)
    want_a[60 - LOWEST, [0, 1, 2, 4]] = 1  # held from before the window, re-struck in frame 4
    want_o[60 - LOWEST, 4] = 1  # ... its first onset lies before the window: not marked
    want_a[64 - LOWEST, [1, 2, 3]] = 1  # 0.113 .. 0.1305: ends mid-frame 3
    want_o[64 - LOWEST, 1] = 1
    want_a[67 - LOWEST, 3] = 1  # ends exactly where frame 4 starts: not in it
    want_o[67 - LOWEST, 3] = 1
    want_a[72 - LOWEST, 0] = want_o[72 - LOWEST, 0] = 1  # zero length: still its onset frame
    # 108 starts at the window's end, 21 ends at its start: neither is in it.
    np.testing.assert_array_equal(active, want_a)
    np.testing.assert_array_equal(onsets, want_o)
    assert active.dtype == onsets.dtype == np.float32
    assert note_frames(notes, 1600, 801)[0].shape == (KEYS, 6)  # F = ceil(length / hop)


def _naive_frames(notes: Notes, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame by frame, note by note: the definition, slowly."""
    frames = -(-length // HOP)
    active, onsets = np.zeros((KEYS, frames)), np.zeros((KEYS, frames))
    for on, off, p in zip(notes.onset * 16000, notes.offset * 16000, notes.pitch, strict=True):
        for f in range(frames):
            lo, hi = start + f * HOP, start + (f + 1) * HOP
            if (on < hi and off > lo) or lo <= on < hi:
                active[p - LOWEST, f] = 1
            if lo <= on < hi:
                onsets[p - LOWEST, f] = 1
    return active, onsets


def test_note_frames_match_the_definition_and_are_fast():
    rng = np.random.default_rng(0)
    onset = np.sort(rng.uniform(0, 2.0, 400))
    notes = Notes(onset, onset + rng.uniform(0, 0.3, 400), rng.integers(LOWEST, 109, 400))
    for start, length in ((4000, 16000), (0, 1234), (30000, 5000)):
        active, onsets = note_frames(notes, start, length)
        want_a, want_o = _naive_frames(notes, start, length)
        np.testing.assert_array_equal(active, want_a)
        np.testing.assert_array_equal(onsets, want_o)
    t0 = time.perf_counter()
    for _ in range(50):
        note_frames(notes, 4000, 16000)
    assert (time.perf_counter() - t0) / 50 < 0.01  # well under 10 ms for 1 s, 400 notes


# --- read_notes --------------------------------------------------------------------------------


def test_read_notes_applies_tempo_changes(tmp_path):
    score = symusic.Score(480)
    # No tempo event at 0: MIDI's 120 bpm holds until tick 960 (1.0 s), then 60 bpm until tick
    # 1920 (3.0 s), then 180 bpm (333333 us per quarter).
    score.tempos.append(symusic.Tempo(960, 60.0))
    score.tempos.append(symusic.Tempo(1920, 180.0))
    lead = symusic.Track("lead", 0, False)
    for tick, dur, pitch in ((0, 480, 60), (1440, 960, 62), (960, 10, 10), (960, 10, 109)):
        lead.notes.append(symusic.Note(tick, dur, pitch, 80))
    other = symusic.Track("other", 40, False)
    other.notes.append(symusic.Note(2880, 480, 108, 80))
    other.notes.append(symusic.Note(480, 240, 21, 80))
    drums = symusic.Track("drums", 0, True)
    drums.notes.append(symusic.Note(480, 240, 38, 80))
    score.tracks.extend([lead, other, drums])
    path = tmp_path / "tempo.mid"
    score.dump_midi(str(path))

    notes = read_notes(path)
    q180 = 0.333333
    np.testing.assert_allclose(notes.onset, [0.0, 0.5, 2.0, 3.0 + 2 * q180], atol=1e-9)
    np.testing.assert_allclose(notes.offset, [0.5, 0.75, 3.0 + q180, 3.0 + 3 * q180], atol=1e-9)
    np.testing.assert_array_equal(notes.pitch, [60, 21, 62, 108])  # no drums, no 10 or 109
    # symusic's own conversion (float32) agrees.
    sec = symusic.Score(str(path)).to("second")
    ref = sorted((n.time, n.pitch) for t in sec.tracks if not t.is_drum for n in t.notes
                 if LOWEST <= n.pitch < LOWEST + KEYS)
    np.testing.assert_allclose(notes.onset, [t for t, _ in ref], atol=1e-5)


def test_read_notes_of_a_broken_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(UmtError, match="cannot read MIDI") as err:
        read_notes(bad)
    assert "\n" not in str(err.value)


# --- labels vs the rendered audio --------------------------------------------------------------


def _frame_db(wav: np.ndarray) -> np.ndarray:
    """(F,) RMS level in dB of each 160-sample frame."""
    frames = wav[: len(wav) // HOP * HOP].reshape(-1, HOP)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _best_lag(onsets: np.ndarray, db: np.ndarray, reach: int = 15) -> int:
    """Frame lag of the audio's level rises behind the labelled onsets (all notes, cross-corr)."""
    o, rise = onsets.max(axis=0)[: len(db)], np.maximum(np.diff(db, prepend=db[0]), 0)
    n = len(o)
    score = [np.dot(o[max(0, -lag) : n - max(0, lag)], rise[max(0, lag) : n - max(0, -lag)])
             for lag in range(-reach, reach + 1)]
    return int(np.argmax(score)) - reach


def test_labels_line_up_with_the_audio(build):
    root, _ = build
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["pieces"]) == 9
    for entry in manifest["pieces"].values():
        notes = read_notes(root / entry["midi"])
        assert round(notes.onset[0] * 100) in LEAD_INS_FRAMES  # the work's first note
        # data.synth writes no tempo event (120 bpm, 480 ticks a beat): seconds survive.
        assert abs(notes.offset.max() - entry["notes_seconds"]) < 2e-3
        for inst in INSTRUMENTS:
            wav, _ = sf.read(str(root / entry["audio"][inst]["path"]), dtype="float32")
            active, onsets = note_frames(notes, 0, len(wav))
            label = int(np.flatnonzero(onsets.any(axis=0))[0])
            assert not active[:, :label].any()
            # Sound starts 3-6 ms after the labelled onset (fluidsynth's latency): never before
            # it, and within one frame.
            first = int(np.flatnonzero(np.abs(wav) > 1e-4)[0])
            assert 0 <= first - notes.onset[0] * 16000 < HOP, (inst, entry["midi"])
            db = _frame_db(wav)
            loud = int(np.flatnonzero(db > db.max() - 60)[0])
            assert loud - label in (0, 1), (inst, entry["midi"])
            # Every note, not only the first: no drift. (The flute's slow attack peaks 3-4
            # frames late, so its rises are not sharp enough for this.)
            if inst != "flute":
                assert _best_lag(onsets, db) in (0, 1), (inst, entry["midi"])


# --- PairedSampler -----------------------------------------------------------------------------


def _locate(seg: np.ndarray, samples: np.ndarray) -> int:
    """The one offset of ``seg`` (float32 from the cache) in a domain's int16 ``samples``."""
    q = np.round(seg * 32768).astype(np.int16)
    peak = int(np.argmax(np.abs(q[:-64])))
    key = q[peak : peak + 64]
    hits = np.flatnonzero(samples[: len(samples) - 63] == key[0])
    hits = [h for h in hits if np.array_equal(samples[h : h + 64], key)]
    assert len(hits) == 1
    return hits[0] - peak


def _where(seg: np.ndarray, cache: Path, domain: str) -> tuple[str, int]:
    """(piece name, start sample) of a segment, found by searching the cached audio."""
    audio = open_cache(cache, "train")[domain]
    offset = _locate(seg, np.asarray(audio.samples))
    file = int(np.searchsorted(audio.spans[:, 0], offset, side="right") - 1)
    return Path(cached_paths(cache, "train")[domain][file]).stem, offset - int(audio.spans[file, 0])


def test_paired_draws_are_the_same_clip_on_two_instruments(build):
    root, cache = build
    s = _sampler(build, paired=1.0, batch_per_domain=3)
    b = s.next_batch()
    assert (b.source_domain != b.target_domain).all()
    manifest = json.loads((root / "manifest.json").read_text())
    for i in range(len(b.target)):
        src, tgt = int(b.source_domain[i]), int(b.target_domain[i])
        piece, start = _where(b.target[i].numpy(), cache, INSTRUMENTS[tgt])
        assert _where(b.source[i].numpy(), cache, INSTRUMENTS[src]) == (piece, start)
        active, onsets = note_frames(read_notes(root / manifest["pieces"][piece]["midi"]),
                                     start, SEGMENT)
        np.testing.assert_array_equal(b.active[i].numpy(), active)
        np.testing.assert_array_equal(b.onsets[i].numpy(), onsets)


def test_batches_are_domain_major_and_unpaired_draws_reconstruct(build):
    s = _sampler(build, paired=0.0)
    b = s.next_batch()
    K, B, F = len(INSTRUMENTS), 4, SEGMENT // HOP
    assert b.target.shape == b.source.shape == b.source_aug.shape == (K * B, SEGMENT)
    assert b.active.shape == b.onsets.shape == (K * B, KEYS, F)
    np.testing.assert_array_equal(b.target_domain.numpy(), np.repeat(np.arange(K), B))
    assert b.target_domain.dtype == b.source_domain.dtype == torch.int64
    assert (b.source_domain == b.target_domain).all()
    assert (b.source == b.target).all() and (b.source_aug == b.source).all()
    assert b.active.sum() > 0


def test_paired_fraction_silence_and_augmentation(build):
    s = _sampler(build, paired=0.5, augment=True, silence_db=-45.0, batch_per_domain=40,
                 segment=4000)
    b = s.next_batch()
    paired = (b.source_domain != b.target_domain).float().mean().item()
    assert 0.3 < paired < 0.7
    level = 20 * np.log10(np.sqrt(np.mean(b.target.numpy() ** 2, axis=1)) + 1e-12)
    assert (level >= -45.0).all()  # silent targets are redrawn
    assert not (b.source_aug == b.source).all()  # the encoder's copy is pitch-shifted
    same = b.source_domain == b.target_domain
    assert (b.source[same] == b.target[same]).all()


def test_common_length_is_the_shortest_render(build):
    root, _ = build
    s = _sampler(build)
    manifest = json.loads((root / "manifest.json").read_text())
    for piece, length in zip(s.pieces, s.lengths, strict=True):
        frames = [sf.info(str(root / manifest["pieces"][piece]["audio"][i]["path"])).frames
                  for i in INSTRUMENTS]
        assert length == min(frames)


def test_state_dict_round_trip_repeats_batches(build):
    s = _sampler(build, augment=True)
    s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # plain types
    first = s.next_batch()
    fresh = _sampler(build, augment=True, seed=123)
    fresh.load_state_dict(state)
    again = fresh.next_batch()
    for name in ("source", "source_aug", "target", "source_domain", "target_domain", "active",
                 "onsets"):
        assert (getattr(first, name) == getattr(again, name)).all(), name
    assert not (s.next_batch().target == first.target).all()


def test_not_a_data_synth_build_is_one_line(build, tmp_path):
    root, cache = build
    plain = tmp_path / "plain"
    shutil.copytree(root / "piano", plain / "piano")
    for manifest in (None, {"instruments": {"piano": 0}}):
        if manifest is not None:
            (plain / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(UmtError) as err:
            PairedSampler.from_build(plain, cache, "train", ["piano"], SEGMENT, 2)
        assert NOT_A_BUILD in str(err.value) and "\n" not in str(err.value)
    assert NOT_A_BUILD == "labels need a data.synth build (OUT/manifest.json with midi)"


def test_cache_that_does_not_match_the_build_is_one_line(build, tmp_path):
    root, cache = build
    for bad_cache, domains, match in ((tmp_path / "none", ["piano"], "no audio cache"),
                                      (cache, ["piano", "cello"], "cello not in the cache")):
        with pytest.raises(UmtError, match=match) as err:
            PairedSampler.from_build(root, bad_cache, "train", domains, SEGMENT, 2)
        assert "\n" not in str(err.value)
    with pytest.raises(UmtError, match="paired must be a probability"):
        _sampler(build, paired=1.5)
