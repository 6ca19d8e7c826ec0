"""Symbolic checkpoints: the resumable training state and the inference export, both atomic.

The training state (``run_dir/last.pt``) resumes a run; the export holds only the config, fp16
weights and metadata, as plain types that ``torch.load(..., weights_only=True)`` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from plumbing.atomic import atomic_torch_save
from plumbing.config import to_dataclass, to_dict
from plumbing.errors import UserError
from symbolic.config import ModelConfig
from symbolic.model import MusicTransformer

EXPORT_FORMAT = "symbolic-export-1"
STATE_FORMAT = "symbolic-train-1"
STATE_NAME = "last.pt"  # the training state inside trainer.run_dir


def read_tagged(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """Load a file safely (``weights_only``) and check its format tag.

    Args:
        path: The file.
        fmt: The format tag it must carry.
        what: What it should be, for the message (``symbolic export``).

    Raises:
        UserError: a missing file, not a torch file, or another format (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such {what}: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign or corrupt files
        raise UserError(f"{path} is not a {what} ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise UserError(f"{path} is not a {what}")
    return blob


def export(model: MusicTransformer, path: str | Path, meta: dict[str, Any]) -> None:
    """Write the inference export: config + fp16 weights + metadata, plain types only."""
    sd = {k: v.detach().to("cpu", torch.float16).clone() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": EXPORT_FORMAT, "config": to_dict(model.cfg), "model": sd,
                       "meta": meta}, path)


def read_export(path: str | Path) -> dict[str, Any]:
    """The raw export (format, config, model, meta), checked; see :func:`read_tagged`."""
    return read_tagged(path, EXPORT_FORMAT, "symbolic export")


def load_export(path: str | Path) -> MusicTransformer:
    """Load an export into a float32 model in eval mode.

    Raises:
        UserError: a missing file or one that is not a symbolic export.
    """
    return model_from_export(read_export(path))


def model_from_export(blob: dict[str, Any]) -> MusicTransformer:
    """The float32 eval-mode model of an export already read by :func:`read_export`."""
    model = MusicTransformer(to_dataclass(ModelConfig, blob["config"]))
    model.load_state_dict({k: v.float() for k, v in blob["model"].items()}, strict=True)
    return model.eval()


def save_state(path: str | Path, config: Any, step: int, model: torch.nn.Module,
               optim: torch.optim.Optimizer) -> None:
    """Write the resumable training state atomically (the run's config rides along)."""
    atomic_torch_save({"format": STATE_FORMAT, "config": to_dict(config), "step": step,
                       "model": model.state_dict(), "optim": optim.state_dict()}, path)


def load_state(path: str | Path) -> dict[str, Any]:
    """The training state written by :func:`save_state` (format, config, step, model, optim)."""
    return read_tagged(path, STATE_FORMAT, "symbolic training state")
