"""Dataset builder: instrument table, SoundFont errors, splits, layout of a built dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from data import instruments, render, synth
from tests._paired import paired  # noqa: F401  (fixture)
from umt.errors import UmtError


def test_instruments_map_to_general_midi_programs():
    assert instruments.parse_instruments("piano, Violin,flute") == {
        "piano": 0, "violin": 40, "flute": 73}
    with pytest.raises(UmtError, match="unknown instrument 'kazoo'"):
        instruments.parse_instruments("piano,kazoo")
    with pytest.raises(UmtError, match="twice"):
        instruments.parse_instruments("piano,piano")


def test_missing_soundfont_names_the_apt_package(monkeypatch):
    monkeypatch.setitem(instruments.SOUNDFONTS, "fluidr3",
                        ("/nonexistent/FluidR3_GM.sf2", "fluid-soundfont-gm"))
    with pytest.raises(UmtError, match="apt-get install fluid-soundfont-gm"):
        instruments.resolve_soundfonts("fluidr3")


def test_missing_fluidsynth_names_the_apt_package(monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda _: None)
    with pytest.raises(UmtError, match="apt-get install fluidsynth"):
        render.fluidsynth_path()


def test_splits_are_disjoint_deterministic_and_never_empty():
    works = [f"w{i}" for i in range(40)]
    a = synth.assign_splits(works, seed=3, val_frac=0.1, test_frac=0.1)
    assert a == synth.assign_splits(list(reversed(works)), seed=3, val_frac=0.1, test_frac=0.1)
    assert sorted(a) == sorted(works)  # every work in exactly one split
    assert sorted(a.values()).count("test") == 4 and sorted(a.values()).count("val") == 4
    assert a != synth.assign_splits(works, seed=4, val_frac=0.1, test_frac=0.1)
    small = synth.assign_splits(["a", "b", "c"], seed=0, val_frac=0.1, test_frac=0.1)
    assert sorted(small.values()) == ["test", "train", "val"]


def test_cli_bad_instrument_is_one_line_and_nonzero(tmp_path, capsys):
    assert synth.main(["--out", str(tmp_path / "d"), "--instruments", "kazoo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown instrument") and "\n" not in err
    assert not (tmp_path / "d").exists()


def test_built_dataset_layout(paired):  # noqa: F811
    m = json.loads((paired / "manifest.json").read_text())
    split_of = {w: s for s, ws in m["splits"].items() for w in ws}
    assert sum(len(ws) for ws in m["splits"].values()) == len(split_of)  # no work in two splits
    assert all(m["splits"][s] for s in synth.SPLITS)
    mono = [p for p, e in m["pieces"].items() if e["monophonic"]]
    assert mono and all(p.endswith("__soprano") for p in mono)
    for piece, e in m["pieces"].items():
        assert e["split"] == split_of[e["work"]]
        assert (paired / e["midi"]).is_file()
        for inst in ("piano", "violin", "flute"):
            path = paired / e["audio"][inst]["path"]
            assert path.parts[-3:] == (inst, e["split"], f"{piece}.wav")
            info = sf.info(str(path))
            assert (info.samplerate, info.channels) == (16000, 1)
            assert info.duration >= e["notes_seconds"] - 0.05  # the release tail is kept
    wav, _ = sf.read(str(paired / m["pieces"][mono[0]]["audio"]["violin"]["path"]))
    rms_db = 20 * np.log10(np.sqrt(np.mean(wav**2)))
    assert -23 < rms_db < -17  # loudness-normalised to -20 dB RMS (peak-limited at most)


def test_rebuild_resumes_and_refuses_other_settings(paired):  # noqa: F811
    settings = json.loads((paired / ".build.json").read_text())
    cfg = synth.BuildConfig(out=paired, instruments={"piano": 0},
                            soundfonts=instruments.resolve_soundfonts("timgm6mb"))
    assert cfg.identity() != settings
    with pytest.raises(UmtError, match="other settings"):
        synth.build_dataset(cfg)


@pytest.mark.slow
def test_same_seed_same_dataset(tmp_path):
    from tests._paired import require_fluidsynth

    require_fluidsynth()
    args = ["--instruments", "piano,cello", "--soundfont", "timgm6mb,fluidr3", "--hours", "0.02",
            "--max-seconds", "6", "--cache", str(tmp_path / "c")]
    assert synth.main(["--out", str(tmp_path / "a"), *args]) == 0
    assert synth.main(["--out", str(tmp_path / "b"), *args]) == 0
    ma, mb = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert ma["splits"] == mb["splits"] and ma["pieces"] == mb["pieces"]


def test_sources_share_the_hours_evenly(tmp_path):
    # 30 works in one folder, 4 in the other: a plain shuffle of all 34 would pick mostly the
    # first; the builder alternates by audio so far, until the small source runs out.
    from data.render import NoteEvent, write_midi

    for name, n in (("many", 30), ("few", 4)):
        for i in range(n):
            notes = [NoteEvent(k * 0.5, k * 0.5 + 0.4, 60 + k % 12, 80) for k in range(20)]
            write_midi(tmp_path / name / f"{name}{i}.mid", notes)
    sources = [str(tmp_path / "many"), str(tmp_path / "few")]
    cfg = synth.BuildConfig(out=tmp_path / "out", instruments={"piano": 0}, soundfonts=[],
                            sources=sources, hours=79 / 3600, voices="none")  # a work lasts 9.9 s
    works = {p.work for p in synth.select_pieces(cfg)}
    per_source = {s: sum(w.startswith(s) for w in works) for s in ("many", "few")}
    assert per_source == {"many": 4, "few": 4}
    cfg.hours = 197 / 3600  # more than the small source has: the big one fills the rest
    works = {p.work for p in synth.select_pieces(cfg)}
    assert sum(w.startswith("few") for w in works) == 4 and len(works) == 20


def _midi_works(folder, n: int, seconds: float) -> None:
    """``n`` one-line MIDI works of ``seconds`` each (a note every 0.5 s)."""
    from data.render import NoteEvent, write_midi

    for i in range(n):
        notes = [NoteEvent(k * 0.5, k * 0.5 + 0.4, 60 + (i + k) % 12, 80)
                 for k in range(round(seconds / 0.5))]
        write_midi(folder / f"w{i}.mid", notes)


def test_tiny_hours_build_the_smallest_dataset_with_every_split(tmp_path, capsys):
    from tests._paired import require_fluidsynth

    require_fluidsynth()
    _midi_works(tmp_path / "mid", 5, seconds=2.0)  # each work lasts 1.9 s
    base = ["--instruments", "piano", "--soundfont", "timgm6mb", "--voices", "none",
            "--sources", str(tmp_path / "mid"), "--jobs", "1"]
    assert synth.main(["--out", str(tmp_path / "a"), *base, "--hours", "0.0001"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert err == ["note: --hours 0.0001 is less than the smallest dataset with a train, val and "
                   "test work; building 3 works (0.0016 h per instrument)"]
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert {s: len(w) for s, w in m["splits"].items()} == {"train": 1, "val": 1, "test": 1}
    assert len(list((tmp_path / "a" / "piano").rglob("*.wav"))) == 3
    # Hours that need three works anyway: no note, and the same three works.
    assert synth.main(["--out", str(tmp_path / "b"), *base, "--hours", str(5.0 / 3600)]) == 0
    assert "note:" not in capsys.readouterr().err
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert mb["splits"] == m["splits"]


def test_too_few_works_for_three_splits_is_one_line(tmp_path, capsys):
    _midi_works(tmp_path / "mid", 2, seconds=2.0)
    cfg = synth.BuildConfig(out=tmp_path / "out", instruments={"piano": 0}, soundfonts=[],
                            sources=[str(tmp_path / "mid")], hours=1.0, voices="none")
    with pytest.raises(UmtError, match="only 2 usable work"):
        synth.select_pieces(cfg)
