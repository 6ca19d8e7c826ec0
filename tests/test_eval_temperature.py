"""Picking a sampling temperature on validation works and storing it in the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _paired import TIMBRE, paired  # noqa: F401 (fixture)
from umt_helpers import train_config

from evaluation.temperature import best, main, sweep, table, write_temperature
from umt.checkpoint import export_defaults


@pytest.fixture
def paired_export(paired, tmp_path) -> Path:  # noqa: F811
    """A tiny WaveNet model trained one step on the paired build, exported."""
    from umt.export import export
    from umt.trainer import Trainer

    cfg = train_config(paired, tmp_path, max_steps=1)
    Trainer(cfg, tmp_path / "run").fit()
    return Path(export(tmp_path / "run", tmp_path / "model.pt")["path"])


def test_best_is_the_lowest_distance_and_the_lower_temperature_on_a_tie():
    rows = {1.0: {"mel_db": 9.0}, 0.7: {"mel_db": 8.0}, 0.5: {"mel_db": 8.0}}
    assert best(rows) == 0.5
    rows[0.5]["mel_db"] = 8.5
    assert best(rows) == 0.7


def test_sweep_scores_validation_clips_and_stores_the_choice(paired, paired_export,  # noqa: F811
                                                            tmp_path):
    out = tmp_path / "sweep"
    rows = sweep(paired_export, paired, "violin:piano", [0.5, 1.0], out, n=1, seconds=0.5,
                 cache=paired.parent / "cache", timbre=TIMBRE)
    assert set(rows) == {0.5, 1.0} and all(r["mel_db"] > 0 for r in rows.values())
    chosen = best(rows)
    write_temperature(paired_export, chosen)
    assert export_defaults(paired_export)["temperature"] == chosen
    assert f"| {chosen:g} (chosen) |" in table(rows, chosen)
    # The clips came from the validation works, never the test works.
    manifest = json.loads((paired / "manifest.json").read_text())
    split = {name: e["split"] for name, e in manifest["pieces"].items()}
    report = json.loads((out / "t0.5" / "report.json").read_text())
    assert report["clips"] and {split[c["piece"]] for c in report["clips"]} == {"val"}
    # Only the model runs per temperature: the baselines and the reconstruction do not move.
    assert {name for c in report["clips"] for name in c["systems"]} == {"model"}
    assert not list((out / "t0.5").rglob("transcribe_render.wav"))


def test_write_keeps_the_other_defaults(tiny_export, tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(tiny_export.read_bytes())
    write_temperature(path, 0.7)
    write_temperature(path, 0.8)
    assert export_defaults(path) == {"temperature": 0.8}


def test_bad_temperatures_are_one_line(tiny_export, capsys):
    code = main(["--model", str(tiny_export), "--data", "x", "--pairs", "a:b",
                 "--temperatures", "warm"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --temperatures must be numbers")
    assert err.count("\n") == 1
    assert "| 0.5 (chosen) |" in table({0.5: {"rpa": None, "target_prob": 0.5, "mel_db": 9.0}},
                                       0.5)
