"""The committed model: plain-type export, small, and every command answers with no flag."""

from __future__ import annotations

import pytest
import symusic
import torch

from symbolic.api import DEFAULT_MODEL
from symbolic.cli import main


def test_shipped_export_is_plain_and_small():
    blob = torch.load(DEFAULT_MODEL, weights_only=True)
    assert blob["config"]["name"] == "small"
    assert DEFAULT_MODEL.stat().st_size < 5e6
    assert blob["meta"]["steps"] > 0


def test_shipped_model_continues_with_no_flag(chorale_paths, tmp_path):
    out = tmp_path / "c.mid"
    assert main(["continue", str(chorale_paths[0]), "-o", str(out), "--bars", "1"]) == 0
    assert symusic.Score(str(out)).note_num() > symusic.Score(str(chorale_paths[0])).note_num()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["harmonize"], ["melody"], ["remix", "--keep", "rhythm"],
                                  ["remix", "--keep", "pitch"], ["continue", "--bars", "8"]])
def test_every_command_with_the_shipped_model(args, chorale_paths, tmp_path):
    out = tmp_path / "out.mid"
    assert main([args[0], str(chorale_paths[0]), "-o", str(out), *args[1:]]) == 0
    assert symusic.Score(str(out)).note_num() > 0
