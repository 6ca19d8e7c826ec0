"""The listening page (evaluation/listening.py): links, players, tables and marked wins, read back
with html.parser; the slow test renders it in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation.listening import PLAYERS, model_wins, write_html
from evaluation.report import METRICS, write_report
from tests._page import broken_links, parse_page

KEYS = [k for k, _, _ in METRICS]
# Model beats both baselines on rpa (higher) and mel_db (lower); ties on chroma; loses on top1.
MODEL = {"rpa": 0.9, "voicing": 0.5, "chroma": 0.8, "target_prob": 0.6, "top1": 0.0,
         "mel_db": 5.0, "mr_stft": 9.0}
IDENTITY = {"rpa": 0.7, "voicing": 0.9, "chroma": 0.8, "target_prob": 0.1, "top1": 0.5,
            "mel_db": 12.0, "mr_stft": 3.0}
TRANSCRIBE = {"rpa": 0.8, "voicing": None, "chroma": 0.6, "target_prob": 0.3, "top1": 1.0,
              "mel_db": 7.0, "mr_stft": 4.0}
PIECE = "bwv 1<2>&x"  # a name that needs escaping in text and quoting in a URL


def _systems(with_model: bool) -> dict[str, dict]:
    s = {"model": MODEL, "reconstruction": dict.fromkeys(KEYS, 1.0)} if with_model else {}
    return s | {"transcribe_render": TRANSCRIBE, "identity": IDENTITY}


def _fake_report(out: Path, with_model: bool = True, real_media: bool = False) -> dict:
    """A report of 2 pairs x 2 clips, with the clip folders the suite would leave."""
    rows = []
    for pair in ("violin:piano", "flute:piano"):
        for i, start in enumerate((1.0, 2.5)):
            clip = f"{PIECE}@{round(start * 100):06d}"
            folder = out / "clips" / pair.replace(":", "-to-") / clip
            folder.mkdir(parents=True)
            names = ["source", "ground_truth", *_systems(with_model)]
            for name in names:
                if name != "identity":  # the suite saves no identity.wav: it is the source
                    tone = np.sin(np.linspace(0, 400 * (i + 1), 8000)).astype(np.float32)
                    sf.write(folder / f"{name}.wav", 0.3 * tone, 16000)
            _png(folder / "spectrograms.png", real_media)
            rows.append({"pair": pair, "clip": clip, "piece": PIECE, "start": start,
                         "seconds": 0.5, "monophonic": i == 0, "systems": _systems(with_model)})
    by_pair = {p: {s: m | {"clips": 2} for s, m in _systems(with_model).items()}
               for p in ("violin:piano", "flute:piano")}
    report = {"classifier": {"classes": ["flute", "piano", "violin"], "test_accuracy": 0.9},
              "pairs": by_pair, "overall": by_pair["violin:piano"], "clips": rows}
    write_report(out, report)  # report.md and report.json, which the page links
    return report


def _png(path: Path, real: bool) -> None:
    if not real:
        path.write_bytes(b"\x89PNG\r\n\x1a\n")  # the page writer only links it
        return
    import matplotlib.image

    grad = np.linspace(0, 1, 200 * 300).reshape(200, 300)
    matplotlib.image.imsave(path, grad, cmap="magma")


def test_model_wins_need_both_baselines_beaten_in_the_metrics_direction():
    assert model_wins(_systems(True)) == {"rpa", "target_prob", "mel_db"}
    no_rpa = _systems(True) | {"transcribe_render": TRANSCRIBE | {"rpa": None}}
    assert model_wins(no_rpa) == {"target_prob", "mel_db"}  # nothing to compare against
    assert model_wins({"model": MODEL, "identity": IDENTITY}) == set()  # a baseline missing
    assert model_wins(_systems(False)) == set()
    assert model_wins({**_systems(True), "model": MODEL | {"rpa": float("nan")}}) == {
        "target_prob", "mel_db"}


def test_page_links_every_player_and_figure_and_marks_wins(tmp_path):
    out = tmp_path / "eval"
    report = _fake_report(out)
    path = write_html(out, report)
    assert path == out / "report.html"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # written atomically
    page = parse_page(path)
    assert broken_links(path, page) == []
    assert len(page.audio) == 4 * len(PLAYERS) and len(page.images) == 4
    assert sum("transcribe_render.wav" in s for s in page.audio) == 4
    assert sum(s.endswith("/source.wav") for s in page.audio) == 8  # source and identity
    summary, clips = page.tables[0], page.tables[1:]
    assert len(clips) == 4
    assert [c[0] for c in summary[0][:2]] == ["pair", "system"]
    assert [c[0] for c in summary[0][2:]] == [t for _, t, _ in METRICS]
    body = summary[1:]
    assert [(r[0][0], r[1][0]) for r in body] == [
        (p, s) for p in ("violin:piano", "flute:piano", "overall") for s in _systems(True)]
    for row in body:
        won = {k for k, (_, cls) in zip(KEYS, row[2:], strict=True) if cls == "win"}
        assert won == ({"rpa", "target_prob", "mel_db"} if row[1][0] == "model" else set())
        if row[1][0] == "transcribe_render":
            assert row[2 + KEYS.index("voicing")][0] == "–"
    text = path.read_text()
    assert "bwv 1&lt;2&gt;&amp;x" in text and PIECE not in text  # escaped, never raw
    assert "higher is better" in text and "lower is better" in text


def test_page_without_a_model_has_baselines_only(tmp_path):
    out = tmp_path / "eval"
    path = write_html(out, _fake_report(out, with_model=False))
    page = parse_page(path)
    assert broken_links(path, page) == []
    assert not any("model.wav" in s or "reconstruction.wav" in s for s in page.audio)
    assert len(page.audio) == 4 * 4  # source, ground truth, identity, transcribe-then-render
    assert 'class="win"' not in path.read_text()


def test_page_says_missing_instead_of_linking_a_file_that_is_not_there(tmp_path):
    out = tmp_path / "eval"
    report = _fake_report(out)
    gone = out / "clips" / "violin-to-piano" / report["clips"][0]["clip"] / "model.wav"
    gone.unlink()
    path = write_html(out, report)
    page = parse_page(path)
    assert broken_links(path, page) == [] and len(page.audio) == 4 * len(PLAYERS) - 1
    assert "<em>missing</em>" in path.read_text()


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(args: list[str], profile: Path) -> str:
    env = os.environ | {"HOME": str(profile)}  # chromium writes crash dumps and caches under HOME
    run = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.slow
def test_page_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):  # .ci/run installs it as root
            pytest.fail("CI must provide /usr/bin/chromium (apt-get install chromium)")
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")
    out = tmp_path / "eval"
    path = write_html(out, _fake_report(out, real_media=True))
    url = path.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path / "profile")
    assert dom.count("<audio") == 4 * len(PLAYERS)
    assert dom.count("<table") == 5 and dom.count('class="win"') == 3 * (3 + 4)
    assert "Metrics per pair" in dom and "violin:piano" in dom
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,900", url], tmp_path / "profile")
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)  # (900, 1200, 3 or 4) floats in [0, 1]
    assert pixels.shape[:2] == (900, 1200)
    assert float(np.std(pixels[..., :3])) > 0.05  # text, tables and players, not a blank page
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
