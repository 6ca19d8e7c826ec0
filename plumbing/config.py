"""The one way to validate a config: merge it onto a typed dataclass, fail on any typo."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from plumbing.errors import UserError


def to_dataclass(cls: type, cfg: Any) -> Any:
    """Validate a dict or DictConfig against dataclass ``cls`` and return a typed instance.

    Raises:
        UserError: an unknown key (a typo) or a value of the wrong type, in one line.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"bad {cls.__name__}: {first}") from None


def to_dict(cfg: Any) -> dict:
    """A dataclass config as plain nested dicts (what rides inside checkpoints and logs)."""
    return asdict(cfg)
