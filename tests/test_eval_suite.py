"""Timbre classifier on held-out renders, and the whole suite end to end with stand-in models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation.__main__ import main
from evaluation.listening import PLAYERS
from evaluation.suite import EvalConfig, evaluate
from evaluation.timbre import load_or_train
from tests._page import broken_links, parse_page
from tests._paired import TIMBRE, paired  # noqa: F401  (fixture)
from umt import audio
from umt.errors import UmtError


def test_classifier_separates_instruments_on_held_out_renders(paired):  # noqa: F811
    m = json.loads((paired / "manifest.json").read_text())
    clf = load_or_train(paired, m, paired.parent / "cache", TIMBRE)
    assert clf.test_accuracy > 0.8  # crops of test works it never saw
    for e in (e for e in m["pieces"].values() if e["split"] == "test"):
        for inst in clf.classes:
            probs = clf.probs(audio.load(paired / e["audio"][inst]["path"]))
            assert clf.classes[int(np.argmax(probs))] == inst
    again = load_or_train(paired, m, paired.parent / "cache", TIMBRE)  # from the cache
    assert again.test_accuracy == clf.test_accuracy


class Identity:
    """A stand-in model that returns its input: translation = identity, reconstruction = truth."""

    domains = ["piano", "violin", "flute"]

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, wav: np.ndarray, sr: int, to: str, seed: int | None = 0,
                 temperature: float | None = None) -> torch.Tensor:
        # No --temperature given: the suite leaves the model its own (None).
        assert sr == audio.SAMPLE_RATE and to in self.domains and temperature is None
        self.calls += 1
        return torch.from_numpy(np.array(wav, dtype=np.float32))


def test_suite_end_to_end_scores_known_answers_and_resumes(paired, tmp_path):  # noqa: F811
    cfg = EvalConfig(data=paired, out=tmp_path / "eval", pairs="violin:piano", n=2, seconds=1.5,
                     model_id="identity", cache=paired.parent / "cache", timbre=TIMBRE)
    model = Identity()
    report = evaluate(model, cfg)
    assert model.calls == 4  # 2 clips x (translation + reconstruction)
    ident, mod, rec = (report["pairs"]["violin:piano"][s]
                       for s in ("identity", "model", "reconstruction"))
    assert ident == mod  # a model that changes nothing scores exactly as the identity baseline
    assert ident["chroma"] == pytest.approx(1.0) and ident["voicing"] == pytest.approx(1.0)
    assert ident["rpa"] in (None, 1.0)  # 1.0 when a monophonic clip was drawn
    assert ident["mel_db"] > 1.0 and ident["top1"] == 0.0  # a violin is not a piano
    assert rec["mel_db"] == pytest.approx(0.0, abs=1e-3) and rec["top1"] == 1.0
    # A perfect reconstruction keeps the notes it was fed: scored against the target render.
    assert rec["chroma"] == pytest.approx(1.0) and rec["rpa"] in (None, 1.0)
    tr = report["pairs"]["violin:piano"]["transcribe_render"]
    assert tr["mel_db"] < ident["mel_db"]  # re-rendered on a piano: closer to the piano truth
    out = cfg.out
    text = (out / "report.md").read_text()
    assert text.count("| violin:piano |") == 4 + 1  # one row per system, one side by side
    same = " / ".join([f"{ident['mel_db']:.3f}", f"{tr['mel_db']:.3f}", f"{ident['mel_db']:.3f}"])
    assert same in text  # the side-by-side cell: model (= identity) / transcribe / identity
    assert "the model beats identity on 0 of 1 pairs" in text  # a tie is not a win
    clips = sorted((out / "clips" / "violin-to-piano").iterdir())
    assert len(clips) == 2
    for c in clips:
        for name in ("source", "model", "ground_truth", "transcribe_render", "spectrograms"):
            assert any(p.stem == name for p in c.iterdir())
    page = parse_page(out / "report.html")
    assert broken_links(out / "report.html", page) == []
    assert len(page.images) == 2 and len(page.audio) == 2 * len(PLAYERS)  # per clip, all exist
    assert [r[1][0] for r in page.tables[0][1:]] == list(report["overall"]) * 2  # pair, overall
    again = evaluate(model, cfg)
    assert model.calls == 4  # resumed: translations reused
    assert json.dumps(again["pairs"]) == json.dumps(report["pairs"])


def test_cli_rejects_bad_input_with_one_line(paired, tmp_path, capsys):  # noqa: F811
    base = ["--data", str(paired), "--out", str(tmp_path / "o")]
    assert main([*base, "--pairs", "violin-piano"]) == 2
    assert main([*base, "--pairs", "violin:kazoo"]) == 2
    assert main([*base, "--pairs", "violin:piano", "--model", str(tmp_path / "none.pt")]) == 2
    assert main(["--data", str(tmp_path), "--pairs", "violin:piano"]) == 2
    assert main([*base, "--pairs", "violin:piano", "--temperature", "-1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("error: ") for line in lines)


def test_unknown_systems_are_refused(paired, tmp_path):  # noqa: F811
    for systems in (("model", "oracle"), ()):
        cfg = EvalConfig(data=paired, out=tmp_path / "o", pairs="violin:piano", systems=systems)
        with pytest.raises(UmtError, match="systems must be some of"):
            evaluate(Identity(), cfg)
