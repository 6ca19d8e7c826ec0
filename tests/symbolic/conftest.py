"""Shared fixtures: a few real chorales converted once, and a tiny model trained a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import symusic
import torch

from symbolic.chorales import convert_all
from symbolic.tokens import build_tokenizer, token_table

N_CHORALES = 4


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def table(tokenizer):
    return token_table(tokenizer)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A data cache holding the first chorales of the music21 corpus (real data, converted)."""
    root = tmp_path_factory.mktemp("cache")
    paths = convert_all(root / "chorales", limit=N_CHORALES)
    assert len(paths) >= 3
    return root


@pytest.fixture(scope="session")
def chorale_paths(cache_dir) -> list[Path]:
    return sorted((cache_dir / "chorales").glob("*.mid"))


@pytest.fixture(scope="session")
def chorale(chorale_paths) -> symusic.Score:
    return symusic.Score(str(chorale_paths[0]))


def _tiny_overrides(cache_dir: Path, run_dir: Path, steps: int) -> list[str]:
    return ["model=tiny", f"data.cache_dir={cache_dir}", f"data.limit={N_CHORALES}",
            "data.val_fraction=0.3", "data.test_fraction=0.3", f"trainer.run_dir={run_dir}",
            f"trainer.steps={steps}", "trainer.batch_size=2", "trainer.ckpt_every=2",
            "trainer.log_every=1", "trainer.eval_batches=1", "trainer.warmup=1"]


@pytest.fixture(scope="session")
def tiny_overrides():
    """Hydra overrides of a seconds-long tiny training run: f(cache_dir, run_dir, steps)."""
    return _tiny_overrides


@pytest.fixture(scope="session")
def tiny_export(cache_dir, tmp_path_factory) -> Path:
    """A tiny model trained for 2 steps through the real hydra entry; its export path."""
    from symbolic.train import compose_config, train

    run = tmp_path_factory.mktemp("run")
    return train(compose_config(_tiny_overrides(cache_dir, run, 2)))
