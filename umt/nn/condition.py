"""Conditioning as one object: named inputs, each at its own rate, into a decoder's layers.

A decoder is told what to play by named inputs (:class:`InputSpec`): the latent ``z`` and any
number of features (:mod:`umt.features`). Each input is (B, C, frames) at its own hop:

- per frame (hop > 1): projected once per frame for every layer's gate (``L x 2G`` values);
  the decoder's conditioning changes every :attr:`Conditioner.frame` samples, the gcd of the
  frame inputs' hops, so a step never computes a projection.
- per sample (hop 1): projected to the residual width and added at the decoder's input, which
  costs one (B, R) add per step and no memory of layers x samples (a per-layer per-sample input
  at paper size, batch 512 and 1 s segments would take 2 x 128 x 40 layers x 16 000 x 512 floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from umt.config import ModelConfig
from umt.errors import UmtError
from umt.features import EXCITATION, FEATURES, LATENT, NOTES
from umt.labels import HOP as LABEL_HOP
from umt.labels import KEYS

NOTE_CHANNELS = 2 * KEYS  # activity then onsets, per key

Inputs = dict[str, torch.Tensor]  # name -> (B, C, frames of that input)


@dataclass(frozen=True)
class InputSpec:
    """One resolved conditioning input: its name, extractor, channels and hop (1 = per sample)."""

    name: str
    feature: str
    channels: int
    hop: int

    def frames(self, length: int) -> int:
        """Frames this input has for ``length`` samples."""
        return -(-length // self.hop)


def resolve_inputs(cfg: ModelConfig) -> list[InputSpec]:
    """The model's conditioning inputs with every default filled in.

    Raises:
        UmtError: an unknown feature, a duplicate name, or a latent at another hop than the
            encoder's pool.
    """
    enc, specs = cfg.encoder, []
    for item in cfg.condition:
        if item.feature in (LATENT, NOTES):
            channels, hop = ((enc.latent_dim, enc.pool) if item.feature == LATENT
                             else (NOTE_CHANNELS, cfg.notes.hop))
            if item.hop not in (0, hop) or item.channels not in (0, channels):
                raise UmtError(f"input {item.name}: {item.feature} has hop {hop} and "
                               f"{channels} channels (set by the encoder and note head)")
        elif item.feature == EXCITATION:
            channels, hop = 1, 1
            if not any(i.feature == NOTES for i in cfg.condition):
                raise UmtError(f"input {item.name}: the excitation is made from the notes; "
                               "add a notes input to model.condition")
        elif item.feature in FEATURES:
            feat = FEATURES[item.feature]
            channels, hop = item.channels or feat.channels, item.hop or feat.hop
        else:
            known = ", ".join([LATENT, NOTES, EXCITATION, *FEATURES])
            raise UmtError(f"input {item.name}: unknown feature {item.feature!r} (known: {known})")
        if hop < 1:
            raise UmtError(f"input {item.name}: hop must be >= 1, got {hop}")
        if item.feature == NOTES and hop != LABEL_HOP:
            raise UmtError(f"model.notes.hop must be {LABEL_HOP} (the labels' and the "
                           f"tracker's frame), got {hop}")
        specs.append(InputSpec(item.name, item.feature, channels, hop))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UmtError(f"conditioning input names must be unique, got {names}")
    return specs


def reads_notes(specs: list[InputSpec]) -> bool:
    """Whether one of ``specs`` is the ``notes`` input."""
    return any(s.feature == NOTES for s in specs)


def has_note_head(cfg: ModelConfig) -> bool:
    """Whether the model has a note head: enabled, or needed by a decoder that reads notes (a
    model with one needs note labels to train)."""
    return cfg.notes.enabled or reads_notes(resolve_inputs(cfg))


def extract(specs: list[InputSpec], x: torch.Tensor) -> Inputs:
    """Every non-latent input of ``specs`` from the source audio x (B, T) -> {name: (B, C, F)}."""
    return {s.name: FEATURES[s.feature].fn(x, s.hop) for s in specs if s.feature in FEATURES}


class Conditioner(nn.Module):
    """Named inputs -> a decoder's per-layer conditioning (per frame) and input offsets (per
    sample).

    Args:
        specs: The inputs.
        layers: Layers to condition.
        width: Conditioning values per layer (a WaveNet's ``2 * gate``).
        residual: Width of the decoder's input, which per-sample inputs are added to.
        frame: Conditioning frame when no input is per frame (default 800).
    """

    def __init__(self, specs: list[InputSpec], layers: int, width: int, residual: int,
                 frame: int = 800) -> None:
        super().__init__()
        self.specs, self.layers, self.width = list(specs), layers, width
        framed = [s for s in specs if s.hop > 1]
        self.frame = math.gcd(*(s.hop for s in framed)) if framed else frame
        self.per_frame = nn.ModuleDict(
            {s.name: nn.Linear(s.channels, layers * width) for s in framed})
        self.per_sample = nn.ModuleDict(
            {s.name: nn.Linear(s.channels, residual, bias=False) for s in specs if s.hop == 1})

    def spec(self, name: str) -> InputSpec:
        """The input called ``name``."""
        return next(s for s in self.specs if s.name == name)

    @staticmethod
    def check(inputs: Inputs, names: Iterable[str]) -> None:
        """Raise ValueError unless ``inputs`` holds every one of ``names``."""
        missing = [n for n in names if n not in inputs]
        if missing:
            raise ValueError(f"conditioning inputs missing: {missing} (have {sorted(inputs)})")

    def frames(self, inputs: Inputs, frames: int) -> torch.Tensor:
        """Per-layer conditioning of ``frames`` conditioning frames (teacher forcing).

        Args:
            inputs: {name: (B, C, F_name)}, each covering at least ``frames`` frames of its own.
            frames: Conditioning frames (of :attr:`frame` samples) wanted.

        Returns:
            (frames, B, layers, width).
        """
        self.check(inputs, self.per_frame)
        B = next(iter(inputs.values())).shape[0] if inputs else 1
        out = None
        for name, proj in self.per_frame.items():
            per = self.spec(name).hop // self.frame  # conditioning frames per input frame
            x = inputs[name][..., : -(-frames // per)]
            c = proj(x.permute(2, 0, 1))  # (F_name, B, L * W)
            c = c.repeat_interleave(per, 0)[:frames] if per > 1 else c
            out = c if out is None else out + c
        if out is None:
            p = next(self.parameters(), torch.zeros(()))
            return torch.zeros(frames, B, self.layers, self.width, device=p.device, dtype=p.dtype)
        return out.view(out.shape[0], out.shape[1], self.layers, self.width)

    def samples(self, inputs: Inputs, length: int) -> torch.Tensor | None:
        """Per-sample input offsets: {name: (B, C, >= length)} -> (length, B, residual), or None
        where no input is per sample."""
        self.check(inputs, self.per_sample)
        out = None
        for name, proj in self.per_sample.items():
            c = proj(inputs[name][..., :length].permute(2, 0, 1))
            out = c if out is None else out + c
        return out
