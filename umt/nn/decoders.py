"""Decoder kinds: a config names one (``model.decoder.kind``), a builder makes it.

Every kind is an ``nn.Module`` with a common part, so training, export and the Translator carry
any of them:

- ``loss(target, inputs)``: target (B, T) float audio, inputs {name: (B, C, F)};
- ``condition``: its :class:`~umt.nn.condition.Conditioner`, ``frame`` (samples per
  conditioning frame), ``receptive_field``.

and one of two ways to generate:

- sample by sample (``wavenet``): ``step_params()``, ``new_stream(batch, params)``,
  ``frame_condition(frame)``, ``bytes_per_stream(steps)`` (:mod:`umt.nn.stream`), driven by
  :mod:`umt.generate` in parallel chunks;
- frame by frame (``frame``): ``generate(inputs, frames, state)`` -> (audio, state), chunks
  run one after another with the state carried (:func:`frame_level`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from umt.config import ModelConfig
from umt.errors import UmtError
from umt.nn.condition import resolve_inputs
from umt.nn.frame import FrameDecoder
from umt.nn.wavenet import Decoder


def _wavenet(cfg: ModelConfig) -> nn.Module:
    return Decoder(cfg.decoder, resolve_inputs(cfg))


def _frame(cfg: ModelConfig) -> nn.Module:
    return FrameDecoder(cfg.frame, resolve_inputs(cfg))


KINDS: dict[str, Callable[[ModelConfig], nn.Module]] = {"wavenet": _wavenet, "frame": _frame}


def build_decoder(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised decoder of the kind and sizes ``cfg`` names.

    Raises:
        UmtError: an unknown kind.
    """
    kind = cfg.decoder.kind
    if kind not in KINDS:
        raise UmtError(f"unknown decoder kind {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind](cfg)


def frame_level(decoder: nn.Module) -> bool:
    """Whether ``decoder`` generates frame by frame (``generate``) rather than by streaming
    samples."""
    return isinstance(decoder, FrameDecoder)
