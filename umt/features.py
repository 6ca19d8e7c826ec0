"""Feature extractors: the named inputs a decoder can be conditioned on besides the latent.

Each extractor maps the source audio to one input at its own rate. Frame ``f`` of an input at
hop ``h`` summarises samples ``[f h, (f + 1) h)`` (the last frame only the real ones), as the
encoder's pooling does; a per-sample input (hop 1) has one value per sample. Adding an input is
one function here and one entry in the model config's ``condition`` list (:mod:`umt.config`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LATENT = "latent"  # the encoder's output: made by the model, not by an extractor here
NOTES = "notes"  # 88-key activity and onsets: the note head's, the labels' or a tracker's


@dataclass(frozen=True)
class Feature:
    """An extractor and its defaults.

    Attributes:
        fn: ``fn(x, hop)``: x (B, T) float audio in [-1, 1] -> (B, channels, ceil(T / hop)).
        channels: Channels it makes.
        hop: Its default rate in samples per frame (1 = per sample).
    """

    fn: Callable[[torch.Tensor, int], torch.Tensor]
    channels: int
    hop: int


def frame_mean(x: torch.Tensor, hop: int) -> torch.Tensor:
    """Mean of each frame of ``hop`` samples: x (B, C, T) -> (B, C, ceil(T / hop)); the last
    frame averages only the real samples."""
    T = x.shape[-1]
    frames = -(-T // hop)
    total = F.pad(x, (0, frames * hop - T)).unflatten(-1, (frames, hop)).sum(-1)
    counts = torch.full((frames,), float(hop), device=x.device, dtype=x.dtype)
    counts[-1] = T - (frames - 1) * hop
    return total / counts


def loudness(x: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame loudness: RMS in dB, scaled so that -80..0 dBFS maps to -1..1. (B, T) -> (B, 1, F)."""
    power = frame_mean(x.unsqueeze(1).float() ** 2, hop)
    db = 10 * torch.log10(power.clamp_min(1e-8))
    return (db / 40 + 1).clamp(-1, 1).to(x.dtype)


def source(x: torch.Tensor, hop: int) -> torch.Tensor:
    """The source signal itself, at ``hop`` (1: per sample). (B, T) -> (B, 1, ceil(T / hop)).

    A toy (reconstruction can copy it) that exercises the per-sample path end to end; an
    excitation signal (a sine at the notes' f0) takes its place in a real model."""
    return frame_mean(x.unsqueeze(1), hop) if hop > 1 else x.unsqueeze(1)


FEATURES: dict[str, Feature] = {
    "loudness": Feature(loudness, channels=1, hop=160),
    "source": Feature(source, channels=1, hop=1),
}
