"""--render and --plot: a wav of the right length, a piano roll whose panels show the change,
and one-line errors (missing fluidsynth or SoundFont, unwritable path) before any model runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile
import symusic

from symbolic import render as view
from symbolic.cli import main
from tests._paired import require_fluidsynth

ROOT = Path(__file__).resolve().parents[2]
TPQ = 480
# The wav lasts from 0 to the last note-off plus the release: data.render cuts the tail below
# -60 dB of the peak; a TimGM6mb / FluidR3 piano fades below that in ~0.35 s after its note-off.
# Stated tolerance: from the note-off minus 10 ms (whole samples, the 32 -> 16 kHz step) to 1 s
# after it.
TAIL_MIN_S, TAIL_MAX_S = -0.01, 1.0
RGB = {name: np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) / 255
       for name, c in (("blue", view.INPUT_COLOR), ("red", view.NEW_COLOR))}


def _score(notes: list[tuple[float, float, int]], qpm: float = 120.0) -> symusic.Score:
    """One-track 4/4 score of (onset, duration in quarters, pitch) notes."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("notes")
    for on, dur, pitch in notes:
        track.notes.append(symusic.Note(int(on * TPQ), int(dur * TPQ), pitch, 80))
    score.tracks.append(track)
    return score


SCALE = [(i, 1.0, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71, 72])]


def _timgm():
    require_fluidsynth()
    return view.resolve_soundfont("timgm6mb")


def test_render_lasts_until_the_last_note_off_plus_the_release(tmp_path):
    score = _score(SCALE, qpm=90.0)  # 8 quarters at 90 qpm: the last note ends at 5.333 s
    end = 8 * 60 / 90
    secs = view.render_wav(score, tmp_path / "a.wav", _timgm())
    wav, sr = soundfile.read(str(tmp_path / "a.wav"))
    assert sr == 16_000 and wav.ndim == 1
    assert secs == pytest.approx(len(wav) / sr)
    assert end + TAIL_MIN_S <= len(wav) / sr <= end + TAIL_MAX_S, len(wav) / sr
    # Not silent anywhere a note sounds: every 0.5 s window up to the end has energy.
    windows = wav[: int(end * 2) * sr // 2].reshape(-1, sr // 2)
    assert np.sqrt((windows ** 2).mean(axis=1)).min() > 0.01
    assert np.abs(wav).max() > 0.1  # loudness normalised, not the synth's raw level
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temp file left


def _pixels(png: Path, color: str) -> tuple[int, int]:
    """Pixels of ``color`` inside the top and inside the bottom panel of the PNG."""
    img = matplotlib.image.imread(str(png))[..., :3]
    # The panels' frames: rows dark across most of the width (top/bottom spines, 2 per panel).
    frames = np.flatnonzero((img.max(axis=-1) < 0.3).mean(axis=1) > 0.7)
    assert len(frames) == 4, frames
    near = np.abs(img - RGB[color]).max(axis=-1) < 0.02
    return (int(near[frames[0] + 1:frames[1]].sum()),
            int(near[frames[2] + 1:frames[3]].sum()))


def test_plot_panels_show_what_changed(tmp_path):
    given = _score(SCALE)
    out = _score(SCALE[:6] + [(6, 1.0, 76), (7, 1.0, 79), (8, 2.0, 48)])  # 6 kept, 3 new
    png = tmp_path / "roll.png"
    assert view.plot_piano_roll(given, out, png) == (6, 3)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 1_000_000
    h, w = matplotlib.image.imread(str(png)).shape[:2]
    assert (w, h) == (1200, 600)
    red_top, red_bottom = _pixels(png, "red")
    blue_top, blue_bottom = _pixels(png, "blue")
    assert red_top == 0 and red_bottom > 200  # new notes only in the output panel
    assert blue_top > blue_bottom > 200  # the input's 8 notes, of which 6 are kept below

    same = tmp_path / "same.png"
    assert view.plot_piano_roll(given, given, same) == (8, 0)
    img = matplotlib.image.imread(str(same))[..., :3]
    assert not (np.abs(img - RGB["red"]).max(axis=-1) < 0.02).any()  # no red, not in a legend
    assert _pixels(same, "blue")[1] > blue_bottom  # all 8 input notes kept, not 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roll.png", "same.png"]


def test_kept_notes_tolerate_the_grid_but_not_a_change():
    given = view.note_array(_score([(0, 1, 60), (1, 1, 62), (2, 6, 64), (4, 1, 60)]))
    out = view.note_array(_score([
        (1 / 32, 1, 60),      # off the 1/8 grid by less than half a step: kept
        (1, 1.25, 62),        # duration changed by a quarter: new
        (2, 6.125, 64),       # a long note, duration within half its 1/4 step: kept
        (4, 1, 61),           # pitch changed: new
        (0, 1, 60),           # a second copy of the first note: the input has it once: new
    ]))
    assert view.kept_mask(given, out).tolist() == [True, False, True, False, False]


def _melody(chorale_paths, tmp_path) -> Path:
    """The soprano of a real chorale, first 4 bars."""
    score = symusic.Score(str(chorale_paths[1]))
    score.tracks = score.tracks[:1]
    sig = score.time_signatures[0]
    score = score.clip(0, 4 * 4 * score.ticks_per_quarter * sig.numerator // sig.denominator)
    path = tmp_path / "melody.mid"
    score.dump_midi(str(path))
    return path


def test_harmonize_renders_and_plots(tiny_export, chorale_paths, tmp_path, capsys):
    _timgm()
    mel = _melody(chorale_paths, tmp_path)
    wav, png, mid = tmp_path / "h.wav", tmp_path / "h.png", tmp_path / "h.mid"
    assert main(["harmonize", str(mel), "-o", str(mid), "--model", str(tiny_export),
                 "--render", str(wav), "--soundfont", "timgm6mb", "--plot", str(png)]) == 0
    line = capsys.readouterr().out.strip()
    out = symusic.Score(str(mid))
    end = out.to("second").end()
    audio, sr = soundfile.read(str(wav))
    assert sr == 16_000 and end + TAIL_MIN_S <= len(audio) / sr <= end + TAIL_MAX_S
    # The melody passes through unchanged: all its notes, and only those, are "kept".
    melody = len(out.tracks[0].notes)
    assert f"({melody} kept, {out.note_num() - melody} new notes)" in line, line
    assert f"rendered {wav}" in line and png.stat().st_size > 5_000


def _one_error_line(capsys, needle: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_missing_soundfont_is_one_line_from_the_command_line(tiny_export, chorale_paths,
                                                             tmp_path):
    out = tmp_path / "c.mid"
    for font, needle in ((str(tmp_path / "nope.sf2"), "no such SoundFont file"),
                         ("nosuchfont", "unknown SoundFont 'nosuchfont'")):
        proc = subprocess.run(
            [sys.executable, "-m", "symbolic", "continue", str(chorale_paths[0]), "-o", str(out),
             "--model", str(tiny_export), "--render", str(tmp_path / "c.wav"),
             "--soundfont", font], cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        # without fluidsynth the check before it answers first: also one line
        assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
        assert needle in lines[0] or "fluidsynth not found" in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # checked before generating: not even the MIDI


def test_missing_default_soundfont_names_its_package(tiny_export, chorale_paths, tmp_path,
                                                     capsys, monkeypatch):
    require_fluidsynth()
    from data import instruments

    monkeypatch.setitem(instruments.SOUNDFONTS, view.DEFAULT_SOUNDFONT,
                        (str(tmp_path / "gone.sf2"), "fluid-soundfont-gm"))
    assert main(["continue", str(chorale_paths[0]), "-o", str(tmp_path / "c.mid"),
                 "--model", str(tiny_export), "--render", str(tmp_path / "c.wav")]) == 2
    _one_error_line(capsys, "apt-get install fluid-soundfont-gm")
    bad = tmp_path / "bad.sf2"
    bad.write_text("not a soundfont")  # fluidsynth itself would fall back to another font
    assert main(["continue", str(chorale_paths[0]), "-o", str(tmp_path / "c.mid"),
                 "--model", str(tiny_export), "--render", str(tmp_path / "c.wav"),
                 "--soundfont", str(bad)]) == 2
    _one_error_line(capsys, "is not a SoundFont")
    assert [p.name for p in tmp_path.iterdir()] == ["bad.sf2"]


def test_missing_fluidsynth_is_one_line(tiny_export, chorale_paths, tmp_path, capsys,
                                        monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # shutil.which finds no fluidsynth there
    assert main(["remix", str(chorale_paths[0]), "--keep", "pitch", "-o", str(tmp_path / "r.mid"),
                 "--model", str(tiny_export), "--render", str(tmp_path / "r.wav")]) == 2
    _one_error_line(capsys, "fluidsynth not found: apt-get install fluidsynth")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_targets_are_one_line(tiny_export, chorale_paths, tmp_path, capsys):
    src = str(chorale_paths[0])
    common = [src, "-o", str(tmp_path / "c.mid"), "--model", str(tiny_export), "--bars", "1"]
    (tmp_path / "file").write_text("")
    cases = [(["--plot", str(tmp_path / "missing" / "c.png")], "does not exist"),
             (["--plot", str(tmp_path / "file" / "c.png")], "is not a folder"),
             (["--plot", str(tmp_path)], "it is a folder"),
             (["--plot", str(tmp_path / "c.mid")], "must name different files"),
             (["--soundfont", "timgm6mb"], "only used with --render")]
    for extra, needle in cases:
        assert main(["continue", *common, *extra]) == 2
        _one_error_line(capsys, needle)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # nothing written


def test_default_soundfont_is_data_synths():
    from data.instruments import SOUNDFONTS
    from data.synth import parse_args

    if not Path(SOUNDFONTS[view.DEFAULT_SOUNDFONT][0]).is_file():
        pytest.skip("FluidR3 not installed (apt-get install fluid-soundfont-gm)")
    assert parse_args(["--out", "unused"]).soundfonts[0].name == view.DEFAULT_SOUNDFONT
