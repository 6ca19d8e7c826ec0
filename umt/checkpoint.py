"""Training checkpoints and model exports: plain types only, written atomically.

A training checkpoint resumes a run; an export holds what inference needs (config, encoder,
decoders) and loads with ``torch.load(..., weights_only=True)``, one decoder at a time if wanted.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from plumbing.atomic import atomic_torch_save
from umt.config import ModelConfig, to_dataclass, to_dict
from umt.errors import UmtError
from umt.model import UniversalTranslator

TRAIN_FORMAT = "umt-train/1"
EXPORT_FORMAT = "umt-export/1"

# The shared atomic ``torch.save`` (temp name, fsync, rename; a full disk is a one-line UmtError),
# under the name umt's callers use.
atomic_save = atomic_torch_save


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(module, "module"):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def load_file(path: str | Path, expected: str) -> dict:
    """Load a checkpoint or export safely and check its format tag.

    Raises:
        UmtError: missing file, not a torch file, or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise UmtError(f"no such model file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for foreign or corrupt files
        raise UmtError(f"{path} is not a umt model file ({type(err).__name__})") from None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if not isinstance(fmt, str) or fmt.split("/")[0] != expected.split("/")[0]:
        kind = "export" if expected == EXPORT_FORMAT else "training checkpoint"
        raise UmtError(f"{path} is not a umt {kind}")
    if fmt != expected:
        raise UmtError(f"{path} has format {fmt}; this umt reads {expected}")
    return obj


def export_state(model: UniversalTranslator) -> dict:
    """The export of a model as plain types: format, config, domains, encoder, decoders."""
    model = unwrap(model)
    return {
        "format": EXPORT_FORMAT,
        "config": to_dict(model.cfg),
        "domains": model.domains,
        "encoder": model.encoder.state_dict(),
        "decoders": {name: dec.state_dict() for name, dec in model.decoders.items()},
        "note_head": None if model.note_head is None else model.note_head.state_dict(),
    }


def check_instruments(wanted: list[str], have: list[str]) -> None:
    """Raise UmtError naming the instruments in ``wanted`` that are not in ``have``, and listing
    those that are."""
    missing = [d for d in wanted if d not in have]
    if missing:
        raise UmtError(f"model has no instrument {', '.join(missing)}; it has: {', '.join(have)}")


def load_export(path: str | Path, domains: list[str] | None = None) -> UniversalTranslator:
    """Build a model from an export, with only the decoders asked for.

    Args:
        path: File written by ``python -m umt.export`` (or :func:`export_state`).
        domains: Decoders to load (default: all). The file is memory-mapped, so decoders not
            asked for are never read from disk.

    Raises:
        UmtError: bad file, or a domain the model lacks (the message lists those it has).
    """
    obj = load_file(path, EXPORT_FORMAT)
    have = list(obj["domains"])
    wanted = list(domains) if domains else have
    check_instruments(wanted, have)
    model = UniversalTranslator(to_dataclass(ModelConfig, obj["config"]), wanted)
    model.encoder.load_state_dict(obj["encoder"])
    if model.note_head is not None:
        if not obj.get("note_head"):
            raise UmtError(f"{path} lacks the note head its config asks for")
        model.note_head.load_state_dict(obj["note_head"])
    for name in wanted:
        model.decoders[name].load_state_dict(obj["decoders"][name])
    return model.eval()


def export_defaults(path: str | Path) -> dict:
    """Translation defaults an export recommends (e.g. ``{"pitch": "tracker"}``, picked on
    validation when it was made); {} when it has none."""
    return dict(load_file(path, EXPORT_FORMAT).get("defaults") or {})


def export_domains(path: str | Path) -> list[str]:
    """The domain names of an export, without building the model."""
    return list(load_file(path, EXPORT_FORMAT)["domains"])
