"""Decoder kinds: a config names one (``model.decoder.kind``), a builder makes it.

Every kind is an ``nn.Module`` with the same contract, so training, generation, export and the
Translator carry any of them:

- ``forward(q, inputs)`` -> (T, B, classes) teacher-forced logits, ``loss(q, inputs)``;
- ``condition``: its :class:`~umt.nn.condition.Conditioner`, ``frame`` (samples per
  conditioning frame), ``receptive_field``;
- streaming: ``step_params()``, ``new_stream(batch, params)``, ``frame_condition(frame)`` and
  ``bytes_per_stream(steps)`` (see :mod:`umt.nn.stream`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from umt.config import ModelConfig
from umt.errors import UmtError
from umt.nn.condition import resolve_inputs
from umt.nn.wavenet import Decoder


def _wavenet(cfg: ModelConfig) -> nn.Module:
    return Decoder(cfg.decoder, resolve_inputs(cfg))


KINDS: dict[str, Callable[[ModelConfig], nn.Module]] = {"wavenet": _wavenet}


def build_decoder(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised decoder of the kind and sizes ``cfg`` names.

    Raises:
        UmtError: an unknown kind.
    """
    kind = cfg.decoder.kind
    if kind not in KINDS:
        raise UmtError(f"unknown decoder kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind](cfg)
