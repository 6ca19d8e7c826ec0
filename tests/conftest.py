"""Shared fixtures: small torch thread pool, toy datasets, a tiny model config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from umt.config import ModelConfig, to_dataclass
from umt.toy import make_toy_dataset

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "umt"

# One thread: the tests run many small ops, where a second thread costs more than it gives.
torch.set_num_threads(1)


def model_config(name: str) -> ModelConfig:
    """A shipped model config by name (tiny, small, paper, release)."""
    text = (CONFIGS / "model" / f"{name}.yaml").read_text()
    return to_dataclass(ModelConfig, yaml.safe_load(text))


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory) -> Path:
    """Two toy instruments playing the same 5 two-second melodies."""
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), files=5, seconds=2.0)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return model_config("tiny")


@pytest.fixture(scope="session")
def tiny_export(toy_root, tmp_path_factory) -> Path:
    """A tiny model trained for two steps on the toy data and exported (instruments saw, sine)."""
    from test_train import _cfg

    from umt.export import export
    from umt.train import fit
    from umt.trainer import Trainer

    tmp = tmp_path_factory.mktemp("tiny_export")
    fit(Trainer(_cfg(toy_root, tmp, max_steps=2), tmp / "run"))
    return Path(export(tmp / "run", tmp / "model.pt")["path"])
