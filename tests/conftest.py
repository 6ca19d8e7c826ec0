"""Shared fixtures: small torch thread pool, toy datasets, a tiny model config."""

from __future__ import annotations

from pathlib import Path

import pytest
from umt_helpers import model_config, train_config

from umt.config import ModelConfig
from umt.toy import make_toy_dataset


@pytest.fixture(scope="session", autouse=True)
def _fp32_on_every_cpu():
    """``precision=auto`` means fp32 in tests on every machine (CI's CPU may lack bf16), so
    exact comparisons hold everywhere; the tests of bf16 ask for it by name."""
    import plumbing.device

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plumbing.device, "native_bf16", lambda: False)
        yield


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

    from umt.export import export
    from umt.trainer import Trainer

    tmp = tmp_path_factory.mktemp("tiny_export")
    Trainer(train_config(toy_root, tmp, max_steps=2), tmp / "run").fit()
    return Path(export(tmp / "run", tmp / "model.pt")["path"])
