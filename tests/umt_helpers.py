"""Helpers shared by the umt tests (a plain module: conftest names clash across folders)."""

from __future__ import annotations

from pathlib import Path

import yaml

from umt.config import DataConfig, ModelConfig, TrainConfig, TrainerConfig, to_dataclass

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "umt"


def model_config(name: str) -> ModelConfig:
    """A shipped model config by name (tiny, small, paper, release)."""
    text = (CONFIGS / "model" / f"{name}.yaml").read_text()
    return to_dataclass(ModelConfig, yaml.safe_load(text))


def train_config(toy_root, tmp_path, **trainer) -> TrainConfig:
    """A tiny CPU run on ``toy_root`` with short segments; ``trainer`` overrides TrainerConfig."""
    data = DataConfig(root=str(toy_root), cache_dir=str(tmp_path / "cache"), segment=1600,
                      batch_per_domain=2, val_segments=2)
    opts = dict(max_steps=2, device="cpu", progress=False, checkpoint_every=1, val_every=2,
                log_every=1)
    opts.update(trainer)
    return TrainConfig(model=model_config("tiny"), data=data, trainer=TrainerConfig(**opts))
