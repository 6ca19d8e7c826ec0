"""Every CLI command on a tiny model writes valid MIDI; bad input gives one clean error line."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import symusic
import torch

from symbolic.cli import main
from symbolic.tokens import build_tokenizer, merge_tracks

ROOT = Path(__file__).resolve().parents[2]


def _read(path: Path) -> symusic.Score:
    score = symusic.Score(str(path))
    assert score.note_num() > 0
    return score


def _quarters(score, fields):
    q = score.ticks_per_quarter
    return Counter(tuple(getattr(n, f) / (q if f != "pitch" else 1) for f in fields)
                   for t in score.tracks for n in t.notes)


@pytest.fixture(scope="module")
def melody_mid(chorale_paths, tmp_path_factory) -> Path:
    """A one-track melody file: the soprano of a chorale, first 8 bars (two 4-bar windows)."""
    score = symusic.Score(str(chorale_paths[1]))
    score.tracks = score.tracks[:1]
    sig = score.time_signatures[0]
    score = score.clip(0, 8 * 4 * score.ticks_per_quarter * sig.numerator // sig.denominator)
    path = tmp_path_factory.mktemp("midi") / "melody.mid"
    score.dump_midi(str(path))
    return path


def test_continue_adds_the_bars(tiny_export, chorale_paths, tmp_path):
    out = tmp_path / "cont.mid"
    assert main(["continue", str(chorale_paths[0]), "-o", str(out), "--bars", "2",
                 "--model", str(tiny_export)]) == 0
    src, res = _read(chorale_paths[0]), _read(out)

    def bar_of_last_onset(score) -> int:
        sig = score.time_signatures[0]
        bar = 4 * score.ticks_per_quarter * sig.numerator // sig.denominator
        return max(n.time for t in score.tracks for n in t.notes) // bar

    assert res.note_num() > src.note_num()
    assert bar_of_last_onset(src) < bar_of_last_onset(res) <= bar_of_last_onset(src) + 2


def test_tagger_command_trains_on_a_folder_and_harmonize_uses_it(chorale_paths, tiny_export,
                                                                  melody_mid, tmp_path):
    out = tmp_path / "tagger.pt"
    assert main(["tagger", "--data", str(chorale_paths[0].parent), "--cache-dir",
                 str(tmp_path / "cache"), "-o", str(out), "--epochs", "2"]) == 0
    res = tmp_path / "h.mid"
    assert main(["harmonize", str(melody_mid), "-o", str(res), "--model", str(tiny_export),
                 "--tagger", str(out), "--candidates", "3"]) == 0
    assert [t.name for t in _read(res).tracks] == ["melody", "harmony"]


@pytest.mark.parametrize("command", ["harmonize", "melody"])
def test_seq2seq_commands_write_two_tracks(command, tiny_export, melody_mid, tmp_path):
    out = tmp_path / f"{command}.mid"
    assert main([command, str(melody_mid), "-o", str(out), "--model", str(tiny_export)]) == 0
    res = _read(out)
    assert [t.name for t in res.tracks] == (["melody", "harmony"] if command == "harmonize"
                                            else ["melody", "chords"])
    given = res.tracks[0] if command == "harmonize" else res.tracks[1]
    src = build_tokenizer().preprocess_score(merge_tracks(symusic.Score(str(melody_mid))))
    assert len(given.notes) == src.note_num()  # the input part is passed through unchanged


@pytest.mark.parametrize("keep,fields", [("rhythm", ("time", "duration")),
                                         ("pitch", ("time", "pitch"))])
def test_remix_keeps_what_it_promises(keep, fields, tiny_export, chorale_paths, tmp_path):
    out = tmp_path / f"remix_{keep}.mid"
    assert main(["remix", str(chorale_paths[0]), "--keep", keep, "-o", str(out),
                 "--model", str(tiny_export), "--pitch-temp", "1.5", "--timing-temp", "1.5"]) == 0
    src = build_tokenizer().preprocess_score(merge_tracks(symusic.Score(str(chorale_paths[0]))))
    res = _read(out)
    assert _quarters(res, fields) == _quarters(src, fields)
    every = ("time", "pitch", "duration")
    assert _quarters(res, every) != _quarters(src, every)  # and it did re-write something


def test_train_command_resumes(cache_dir, tmp_path, tiny_overrides):
    run = tmp_path / "run"
    assert main(["train", *tiny_overrides(cache_dir, run, 2)]) == 0
    assert main(["train", *tiny_overrides(cache_dir, run, 3)]) == 0
    assert "step 3 " in (run / "log.txt").read_text().splitlines()[-1]
    assert (run / "export.pt").is_file()


def test_a_state_from_before_the_attention_options_resumes(cache_dir, tmp_path, tiny_overrides):
    import torch

    from symbolic.checkpoint import STATE_NAME

    run = tmp_path / "run"
    assert main(["train", *tiny_overrides(cache_dir, run, 2)]) == 0
    path = next(run.rglob(STATE_NAME))
    state = torch.load(path, weights_only=True)
    for key in ("attention", "bar_attention", "bar_offsets"):  # as written before they existed
        del state["config"]["model"][key]
    torch.save(state, path)
    assert main(["train", *tiny_overrides(cache_dir, run, 3)]) == 0
    assert "step 3 " in (run / "log.txt").read_text().splitlines()[-1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "symbolic", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _assert_clean_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_clean_errors_for_bad_input(tiny_export, chorale_paths, tmp_path):
    text = tmp_path / "notes.mid"
    text.write_text("not a midi file")
    _assert_clean_error(_cli("harmonize", str(text), "--model", str(tiny_export)),
                        "not a MIDI file")
    empty = symusic.Score(480)
    empty.tracks.append(symusic.Track("empty"))
    empty.dump_midi(str(tmp_path / "empty.mid"))
    _assert_clean_error(_cli("continue", str(tmp_path / "empty.mid"), "--model",
                             str(tiny_export)), "no notes")
    two = symusic.Score(str(chorale_paths[0]))
    drums = symusic.Track("drums", is_drum=True)
    drums.notes.append(symusic.Note(0, 480, 36, 100))
    two.tracks = [two.tracks[0], drums]
    two.dump_midi(str(tmp_path / "two.mid"))
    _assert_clean_error(_cli("harmonize", str(tmp_path / "two.mid"), "--track", "1", "--model",
                             str(tiny_export)), "track 1 has no")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--candidates", "0", "--model",
                             str(tiny_export)), "--candidates must be >= 1")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--context-bars", "-1",
                             "--model", str(tiny_export)), "--context-bars must be >= 0")
    _assert_clean_error(_cli("melody", str(chorale_paths[0]), "--context-bars", "9", "--model",
                             str(tiny_export)), "(--context-bars) must be below the model's")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--chord-guide", "-1",
                             "--model", str(tiny_export)), "--chord-guide must be >= 0")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--chord-judge", "nan",
                             "--model", str(tiny_export)), "--chord-judge must be >= 0")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--tagger",
                             str(tmp_path / "none.pt"), "--model", str(tiny_export)),
                        "no such symbolic chord tagger")
    _assert_clean_error(_cli("harmonize", str(chorale_paths[0]), "--tagger", str(tiny_export),
                             "--model", str(tiny_export)), "is not a symbolic chord tagger")
    assert not list(tmp_path.glob("*.harmonize.mid"))  # nothing half-written


def test_bad_model_config_and_device_are_one_line_errors(tiny_export, chorale_paths, cache_dir,
                                                         tiny_overrides, tmp_path, capsys):
    state = tiny_export.parent / "last.pt"  # a training state, not an export
    cases = [(["continue", str(chorale_paths[0]), "--model", str(state)],
              "is not a symbolic export"),
             (["train", "trainer.stpes=3"], "stpes"),
             # the run folder of tiny_export holds a state of another width: no silent restart
             (["train", *tiny_overrides(cache_dir, tiny_export.parent, 3), "model.d_model=32"],
              "was trained with another model config")]
    if not torch.cuda.is_available():
        run = tmp_path / "run"
        cases.append((["train", *tiny_overrides(cache_dir, run, 2), "trainer.device=cuda"],
                      "no CUDA device"))
    for argv, needle in cases:
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines


def test_eval_errors_are_one_line(tiny_export, tmp_path):
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--harmony-temp", "-1"),
                        "--harmony-temp must be >= 0")
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--continue-temp", "-0.5"),
                        "--continue-temp must be >= 0")
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--harmony-consonance", "-1"),
                        "--harmony-consonance must be >= 0")
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--harmony-context", "-2"),
                        "--harmony-context must be >= 0")
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--harmony-guide", "-2"),
                        "--harmony-guide must be >= 0")
    _assert_clean_error(_cli("tagger", "--data", "corpus", "--cache-dir", str(tmp_path)),
                        "no corpus cache")
    _assert_clean_error(_cli("tagger", "--epochs", "0"), "--epochs must be >= 1")
    _assert_clean_error(_cli("tagger", "-o", str(tmp_path / "no" / "t.pt")),
                        "no folder for the output")
    _assert_clean_error(_cli("eval", "--model", str(tiny_export), "--data", "corpus",
                             "--cache-dir", str(tmp_path)), "no corpus cache")
