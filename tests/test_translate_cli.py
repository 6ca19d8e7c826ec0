"""translate.py end to end: bad inputs as one-line errors, batches, skipping, atomic outputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import translate
from umt.checkpoint import atomic_save
from umt.inputs import shard

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--chunk-seconds", "inf", "-q"]  # one short sequence per output: the quickest path


def _tone(path: Path, seconds: float = 0.1, sr: int = 16_000, channels: int = 1) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 330 * t)
    sf.write(path, np.stack([wav] * channels, 1) if channels > 1 else wav, sr)
    return path


@pytest.fixture(scope="module")
def bad_inputs(tiny_export, tmp_path_factory):
    """name -> (argv, expected words in the error), every case of the issue's list."""
    d = tmp_path_factory.mktemp("bad")
    good = _tone(d / "good.wav")
    (d / "notes.wav").write_text("not audio at all")
    raw = good.read_bytes()
    (d / "trunc.wav").write_bytes(raw[: len(raw) // 2])
    sf.write(d / "empty.wav", np.zeros(0), 16_000)
    sf.write(d / "silent.wav", np.zeros(1600), 16_000)
    sf.write(d / "nan.wav", np.full(1600, np.nan), 16_000, subtype="FLOAT")
    (d / "junk.pt").write_bytes(b"\x00junk")
    atomic_save({"weights": torch.zeros(1)}, d / "other.pt")
    export = torch.load(tiny_export, weights_only=True)
    export["format"] = "umt-export/99"
    atomic_save(export, d / "future.pt")
    (d / "afile").write_text("x")
    m = ["--model", str(tiny_export)]
    return d, {
        "missing file": ([str(d / "nope.wav"), "--to", "saw", *m], "no such file"),
        "not audio": ([str(d / "notes.wav"), "--to", "saw", *m], "cannot read audio"),
        "truncated": ([str(d / "trunc.wav"), "--to", "saw", *m], "truncated"),
        "empty": ([str(d / "empty.wav"), "--to", "saw", *m], "empty"),
        "silent": ([str(d / "silent.wav"), "--to", "saw", *m], "silent"),
        "nan": ([str(d / "nan.wav"), "--to", "saw", *m], "NaN"),
        "instrument": ([str(good), "--to", "piano", *m], "it has: saw, sine"),
        "not umt": ([str(good), "--to", "saw", "--model", str(d / "junk.pt")], "not a umt"),
        "not export": ([str(good), "--to", "saw", "--model", str(d / "other.pt")], "not a umt"),
        "version": ([str(good), "--to", "saw", "--model", str(d / "future.pt")], "umt-export/99"),
        "missing model": ([str(good), "--to", "saw", "--model", str(d / "no.pt")], "no such"),
        "unwritable out": ([str(good), "--to", "saw", *m, "-o", str(d / "afile" / "sub")],
                           "cannot write"),
    }


def _check_failure(name, code, err, expect, out_dir):
    lines = err.strip().splitlines()
    assert code != 0, name
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
    assert expect in lines[0], (name, lines[0])
    assert "Traceback" not in err
    assert not out_dir.exists(), name  # not even the output folder


def _argv(argv, out_dir):
    return [*argv, *(["-o", str(out_dir)] if "-o" not in argv else []), *FAST]


def test_every_bad_input_fails_cleanly_in_process(bad_inputs, tmp_path, capsys):
    d, cases = bad_inputs
    for name, (argv, expect) in cases.items():
        code = translate.main(_argv(argv, tmp_path / name))
        _check_failure(name, code, capsys.readouterr().err, expect, tmp_path / name)
    assert not (d / "afile").is_dir()


@pytest.mark.parametrize("only", [
    ("missing file", "instrument", "version"),
    pytest.param(None, marks=pytest.mark.slow),  # every case as its own process
])
def test_bad_inputs_as_a_process_one_line_and_exit_code(bad_inputs, tmp_path, only):
    _, cases = bad_inputs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "translate.py"), *_argv(argv, tmp_path / name)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, (argv, _) in cases.items() if only is None or name in only
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        _check_failure(name, proc.returncode, err, cases[name][1], tmp_path / name)


def test_no_model_and_none_shipped_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(translate, "PRETRAINED", tmp_path / "pretrained" / "umt.pt")
    assert translate.main([str(_tone(tmp_path / "a.wav")), "--to", "saw"]) == 2
    assert "none shipped" in capsys.readouterr().err
    # Once a model ships there, it is the default.
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / "umt.pt").write_bytes(b"")
    assert translate.model_path(None) == tmp_path / "pretrained" / "umt.pt"


def test_list_prints_the_instruments(tiny_export, capsys):
    assert translate.main(["--list", "--model", str(tiny_export)]) == 0
    assert capsys.readouterr().out.split() == ["saw", "sine"]


def test_folder_is_mirrored_bad_files_skipped_then_rerun_skips_done(tiny_export, tmp_path,
                                                                     capsys):
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    _tone(src / "one.wav")
    _tone(src / "a" / "b" / "two.flac", sr=44_100, channels=2)
    (src / "a" / "broken.wav").write_text("nope")
    out = tmp_path / "out"
    argv = [str(src), "--to", "saw", "--to", "sine", "--model", str(tiny_export), "-o", str(out),
            *FAST]
    assert translate.main(argv) == 1  # one bad file: reported, the rest done
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "broken.wav" in err
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == ["a/b/two.saw.wav", "a/b/two.sine.wav", "one.saw.wav", "one.sine.wav"]
    info = sf.info(str(out / "a" / "b" / "two.saw.wav"))
    assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 1600)

    stamp = (out / "one.saw.wav").stat().st_mtime_ns
    (src / "a" / "broken.wav").unlink()
    assert translate.main(argv) == 0
    assert "0 written, 2 inputs already done" in capsys.readouterr().out
    assert (out / "one.saw.wav").stat().st_mtime_ns == stamp
    assert translate.main([*argv, "--overwrite", "--keep-rate", "--plot"]) == 0
    assert (out / "one.saw.wav").stat().st_mtime_ns != stamp
    assert sf.info(str(out / "a" / "b" / "two.sine.wav")).samplerate == 44_100
    assert (out / "a" / "b" / "two.sine.png").read_bytes()[:4] == b"\x89PNG"


def test_short_files_share_batches_in_packs_of_one_batch(tiny_export, tmp_path, monkeypatch):
    from umt.inference import Translator

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        _tone(src / f"{name}.wav", seconds=0.1 + 0.05 * "abc".index(name))
    calls, real = [], Translator.decode_many

    def recording(self, latents, to, **kw):
        calls.append((to, len(latents)))
        return real(self, latents, to, **kw)

    monkeypatch.setattr(Translator, "decode_many", recording)
    out = tmp_path / "out"
    argv = [str(src), "--to", "saw", "--to", "sine", "--model", str(tiny_export), "-o", str(out),
            "--batch", "2", *FAST]  # one chunk per file, two chunks a batch
    assert translate.main(argv) == 0
    assert calls == [("saw", 2), ("sine", 2), ("saw", 1), ("sine", 1)]
    for name, seconds in (("a", 0.1), ("b", 0.15), ("c", 0.2)):
        for to in ("saw", "sine"):
            assert sf.info(str(out / f"{name}.{to}.wav")).frames == round(seconds * 16_000)


def test_interrupted_write_leaves_no_partial_file_and_rerun_finishes(tiny_export, tmp_path,
                                                                     monkeypatch):
    wav = _tone(tmp_path / "x.wav")
    out = tmp_path / "out"
    argv = [str(wav), "--to", "saw", "--model", str(tiny_export), "-o", str(out), *FAST]
    real_write = sf.write

    def dies_half_way(file, data, *args, **kw):
        real_write(file, data[: len(data) // 2], *args, **kw)  # a partial temp file...
        raise KeyboardInterrupt  # ...then Ctrl-C

    monkeypatch.setattr(sf, "write", dies_half_way)
    assert translate.main(argv) == 130
    assert list(out.iterdir()) == []  # neither the output nor its temp file
    monkeypatch.setattr(sf, "write", real_write)
    (out / ".x.saw.wav.999.tmp").write_bytes(b"left by kill -9")
    assert translate.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.saw.wav"]


def test_same_name_from_two_folders_is_refused_not_overwritten(tiny_export, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    argv = [str(_tone(a / "x.wav")), str(_tone(b / "x.wav")), "--to", "saw",
            "--model", str(tiny_export), "-o", str(tmp_path / "out"), *FAST]
    assert translate.main(argv) == 1
    assert "would both write x.saw.wav" in capsys.readouterr().err
    assert (tmp_path / "out" / "x.saw.wav").exists()


def test_torchrun_ranks_share_the_files():
    jobs = list(range(7))
    parts = [shard(jobs, {"RANK": str(r), "WORLD_SIZE": "3"}) for r in range(3)]
    assert sorted(sum(parts, [])) == jobs and all(parts)
    assert shard(jobs, {}) == jobs


def test_out_folder_may_be_the_input_folder_and_translations_are_never_inputs(tiny_export,
                                                                               tmp_path, capsys):
    src = tmp_path / "rec"
    (src / "sub").mkdir(parents=True)
    _tone(src / "x.wav"), _tone(src / "sub" / "y.wav")
    argv = [str(src), "--to", "saw", "--model", str(tiny_export), "-o", str(src), *FAST]
    assert translate.main(argv) == 0  # it used to find nothing: the out folder was excluded
    assert "2 written" in capsys.readouterr().out
    made = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    assert made == ["sub", "sub/y.saw.wav", "sub/y.wav", "x.saw.wav", "x.wav"]

    stamp = (src / "x.saw.wav").stat().st_mtime_ns
    assert translate.main(argv) == 0  # a rerun: nothing redone, translations not inputs
    assert capsys.readouterr().out.strip() == (
        "0 written, 2 inputs already done, 0 failed, 2 translations skipped")
    assert (src / "x.saw.wav").stat().st_mtime_ns == stamp
    # Another target, and the files named one by one (a shell glob): only the originals.
    files = [str(p) for p in sorted(src.glob("*.wav"))]  # x.saw.wav, x.wav
    assert translate.main([*files, "--to", "sine", *argv[3:]]) == 0
    assert sorted(p.name for p in src.glob("*.wav")) == ["x.saw.wav", "x.sine.wav", "x.wav"]


@pytest.mark.parametrize("layout,expect", [
    ("empty", "nothing to translate in {d}: no audio files"),
    ("text only", "nothing to translate in {d}: no audio files"),
    ("translations only", "nothing to translate in {d}: only translations (1, named"),
    ("a translation named", "nothing to translate: {d}/x.saw.wav is a translation"),
])
def test_nothing_to_translate_is_an_error(tiny_export, tmp_path, layout, expect):
    d = tmp_path / "in"
    d.mkdir()
    if layout == "text only":
        (d / "notes.txt").write_text("no audio here")
    if layout in ("translations only", "a translation named"):
        _tone(d / "x.saw.wav")
    arg = d / "x.saw.wav" if layout == "a translation named" else d
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "translate.py"), str(arg), "--to", "sine",
                           "--model", str(tiny_export), "-o", str(out), *FAST],
                          capture_output=True, text=True, env=env)
    _check_failure(layout, proc.returncode, proc.stderr, expect.format(d=d), out)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("what", ["x.saw.wav", "x.saw.png"])
def test_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tiny_export, tmp_path,
                                                                  monkeypatch, capsys, what):
    """The temp file the output is written through is a link to /dev/full, whose every write
    fails with ENOSPC: the real errors of a full disk, from libsndfile and from matplotlib."""
    import matplotlib.figure

    def onto_full_disk(real, name):
        def write(*args, **kw):  # (file, ...), or (figure, file, ...) for savefig
            if Path(args[name]).name.startswith(f".{what}."):
                os.symlink("/dev/full", args[name])
            return real(*args, **kw)
        return write

    argv = [str(_tone(tmp_path / "x.wav")), "--to", "saw", "--model", str(tiny_export),
            "-o", str(out := tmp_path / "out"), "--plot", *FAST]
    monkeypatch.setattr(sf, "write", onto_full_disk(sf.write, 0))
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        onto_full_disk(matplotlib.figure.Figure.savefig, 1))
    assert translate.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: cannot write {out / what}: no space left on the device"]
    assert captured.out == ""  # the run stops: every later write would fail the same way
    left = sorted(p.name for p in out.iterdir())  # no partial file, no temp file (or link)
    assert left == ([] if what.endswith(".wav") else ["x.saw.wav"])


def test_full_disk_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write that fills the disk half way (OSError ENOSPC after part of the data)."""
    import errno

    from umt.audio import save
    from umt.errors import UmtError

    real = sf.write

    def fills_up(file, data, *args, **kw):
        real(file, data[: len(data) // 2], *args, **kw)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file)

    monkeypatch.setattr(sf, "write", fills_up)
    with pytest.raises(UmtError, match=r"cannot write .*a\.wav: no space left on the device"):
        save(tmp_path / "a.wav", np.zeros(1600, np.float32))
    assert list(tmp_path.iterdir()) == []
