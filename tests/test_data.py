import json
import logging

import numpy as np
import pytest
import soundfile as sf

from umt.data import SegmentSampler, build_cache, open_cache, split_files
from umt.errors import UmtError
from umt.toy import make_toy_dataset


def test_cache_is_built_once_and_rebuilt_when_sources_change(toy_root, tmp_path):
    cache = build_cache(toy_root, tmp_path / "c", min_len=4000)
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sorted(manifest["domains"]) == ["saw", "sine"]
    stamp = (cache / "manifest.json").stat().st_mtime_ns
    assert build_cache(toy_root, tmp_path / "c", min_len=4000) == cache
    assert (cache / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    extra = tmp_path / "copy"
    make_toy_dataset(extra, files=3)
    c2 = build_cache(extra, tmp_path / "c", min_len=4000)
    sf.write(extra / "sine" / "new.wav", np.zeros(8000, np.float32) + 0.1, 16000)
    c3 = build_cache(extra, tmp_path / "c", min_len=4000)
    assert c3 == c2
    files = json.loads((c3 / "manifest.json").read_text())["domains"]["sine"]
    assert any("new.wav" in f["path"] for s in files.values() for f in s["files"])


def test_deterministic_split_by_file(tmp_path):
    make_toy_dataset(tmp_path, domains=("sine",), files=12, seconds=0.5)
    a, b = split_files(tmp_path / "sine"), split_files(tmp_path / "sine")
    assert a == b
    assert len(a["val"]) == 1 and len(a["test"]) == 1 and len(a["train"]) == 10
    assert not set(a["train"]) & set(a["val"]) | set(a["train"]) & set(a["test"])


def test_explicit_split_folders_are_used(tmp_path):
    for split in ("train", "val"):
        make_toy_dataset(tmp_path / split, domains=("sine",), files=2, seconds=0.5)
    (tmp_path / "d").mkdir()
    for split in ("train", "val"):
        (tmp_path / split / "sine").rename(tmp_path / "d" / split)
    files = split_files(tmp_path / "d")
    assert len(files["train"]) == 2 and len(files["val"]) == 2 and files["test"] == []


def test_batches_are_balanced_seeded_and_audible(toy_root, tmp_path):
    cache = build_cache(toy_root, tmp_path / "c", min_len=4000)
    audio = open_cache(cache, "train")
    s1 = SegmentSampler(audio, ["saw", "sine"], 4000, 3, seed=5)
    s2 = SegmentSampler(audio, ["saw", "sine"], 4000, 3, seed=5)
    x, x_aug, labels = s1.next_batch()
    assert x.shape == x_aug.shape == (6, 4000)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(x.numpy(), s2.next_batch()[0].numpy())
    assert (x.square().mean(1).sqrt() > 1e-3).all()
    state = s1.state_dict()
    after = s1.next_batch()[0]
    s2.load_state_dict(state)
    assert np.array_equal(after.numpy(), s2.next_batch()[0].numpy())


def test_missing_and_empty_domain_folders(tmp_path):
    with pytest.raises(UmtError, match="not a folder"):
        build_cache(tmp_path / "nope", tmp_path / "c")
    (tmp_path / "root" / "piano").mkdir(parents=True)
    (tmp_path / "root" / "violin").mkdir()
    make_toy_dataset(tmp_path / "root", domains=("sine",), files=2)
    with pytest.raises(UmtError, match="holds no audio"):
        build_cache(tmp_path / "root", tmp_path / "c")
    with pytest.raises(UmtError, match="does not exist"):
        build_cache(tmp_path / "root", tmp_path / "c", domains=["sine", "cello"])


def test_fewer_than_two_domains(tmp_path):
    make_toy_dataset(tmp_path, domains=("sine",), files=2)
    with pytest.raises(UmtError, match="at least 2 domains"):
        build_cache(tmp_path, tmp_path / "c")
    assert build_cache(tmp_path, tmp_path / "c", min_domains=1, min_len=4000).is_dir()


def test_unreadable_and_short_files_are_reported_and_skipped(toy_root, tmp_path, caplog):
    root = make_toy_dataset(tmp_path / "d", files=2)
    (root / "sine" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    sf.write(root / "saw" / "short.wav", np.zeros(100, np.float32), 16000)
    with caplog.at_level(logging.WARNING):
        cache = build_cache(root, tmp_path / "c", min_len=4000)
    assert "broken.wav" in caplog.text and "short.wav" in caplog.text
    manifest = json.loads((cache / "manifest.json").read_text())
    kept = [f["path"] for d in manifest["domains"].values() for s in d.values() for f in s["files"]]
    names = sorted(p.rsplit("/", 1)[-1] for p in kept)
    assert names == ["piece0.wav", "piece0.wav", "piece1.wav", "piece1.wav"]


def test_all_files_shorter_than_a_segment_is_an_error(tmp_path):
    make_toy_dataset(tmp_path, files=2, seconds=0.5)
    with pytest.raises(UmtError, match="one segment long"):
        build_cache(tmp_path, tmp_path / "c", min_len=16000)
