"""Note labels for a folder without MIDI: the tracker's notes of each file, tracked once."""

from __future__ import annotations

import numpy as np
import pytest
from test_frame import frame_config

import umt.tracked as tracked
from umt.config import DataConfig, TrainConfig, TrainerConfig
from umt.data import build_cache
from umt.errors import UmtError
from umt.labels import note_frames
from umt.pairs import folder_sampler
from umt.toy import make_toy_dataset, melody
from umt.tracker import note_list


def test_a_note_list_gives_back_its_frames():
    key = np.array([-1, 5, 5, 5, 7, 7, -1, -1, 3, 3, 3, 3])
    starts = np.array([1, 4, 8, 10])  # frame 10: a restrike of key 3
    notes = note_list(key, starts)
    assert list(notes.pitch) == [26, 28, 24, 24]
    active, onsets = note_frames(notes, 0, len(key) * 160)
    want = np.zeros_like(active)
    want[key[key >= 0], np.flatnonzero(key >= 0)] = 1
    assert np.array_equal(active, want)
    assert [tuple(x) for x in np.argwhere(onsets.T)] == [(1, 5), (4, 7), (8, 3), (10, 3)]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A toy folder (no MIDI) of one-line melodies, its cache, and the melodies' pitches."""
    tmp = tmp_path_factory.mktemp("plain")
    root = make_toy_dataset(tmp / "data", files=2, seconds=2.0)
    pitches = [melody(r, 2.0) for r in [np.random.default_rng(0)] for _ in range(2)]
    return root, build_cache(root, tmp / "cache"), pitches


def test_a_plain_folder_is_labelled_by_the_tracker_once(plain, monkeypatch):
    root, cache, pitches = plain
    s = folder_sampler(cache, "train", ["sine", "saw"], 16_000, 2, seed=0, augment=False)
    # every file is its own piece, played by its own instrument
    assert s.files.shape == (len(s.pieces), 2) and ((s.files >= 0).sum(1) == 1).all()
    sine_file0 = s.notes[s.pieces.index("sine/0")]
    played = [p for p in pitches[0] for _ in range(25)]  # 0.25 s notes = 25 frames
    active, _ = note_frames(sine_file0, 0, len(played) * 160)
    heard = np.where(active.any(0), active.argmax(0) + 21, -1)
    assert np.mean(heard == np.array(played)) > 0.85
    batch = s.next_batch()
    assert batch.active.shape == (4, 88, 100) and batch.active.sum() > 0
    assert (batch.source_domain == batch.target_domain).all()  # no pairs
    monkeypatch.setattr(tracked, "track_file", lambda *a: pytest.fail("tracked twice"))
    again = folder_sampler(cache, "train", ["sine", "saw"], 16_000, 2, seed=0, augment=False)
    assert np.array_equal(again.notes[0].onset, s.notes[0].onset)


def test_an_interrupted_labelling_resumes_with_the_files_left(plain, tmp_path, monkeypatch):
    root, _, _ = plain
    cache = build_cache(root, tmp_path / "cache")
    calls = []
    real = tracked.track_file

    def crash_on_second(audio, index, device="cpu"):
        calls.append(index)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(audio, index, device)

    monkeypatch.setattr(tracked, "track_file", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        tracked.tracked_labels(cache, "train", ["sine"])
    calls.clear()
    monkeypatch.setattr(tracked, "track_file",
                        lambda a, i, d="cpu": calls.append(i) or real(a, i, d))
    labels = tracked.tracked_labels(cache, "train", ["sine"])
    assert calls == [1] and len(labels["sine"]) == 2  # only the file the crash left


def test_a_frame_model_trains_on_a_plain_folder_and_pairs_need_a_build(plain, tmp_path):
    from umt.trainer import Trainer

    root, _, _ = plain
    data = DataConfig(root=str(root), cache_dir=str(tmp_path / "cache"), segment=1600,
                      batch_per_domain=1, val_segments=1)
    trainer = TrainerConfig(max_steps=1, device="cpu", progress=False, checkpoint_every=1,
                            val_every=1, log_every=1)
    metrics = Trainer(TrainConfig(model=frame_config(), data=data, trainer=trainer),
                      tmp_path / "run").fit()
    assert np.isfinite(metrics["notes/bce"])
    data.paired = 0.5
    with pytest.raises(UmtError, match="data.paired needs a data.synth build"):
        Trainer(TrainConfig(model=frame_config(), data=data, trainer=trainer), tmp_path / "r2")
