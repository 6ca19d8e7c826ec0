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
EXCITATION = "excitation"  # sines at the notes' pitches, per sample: made from the notes input
EXCITATION_PIECE = 16_000  # samples made at a time: only the keys sounding in a piece are summed


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


def excitation(notes: torch.Tensor, length: int, hop: int = 160, sr: int = 16_000) -> torch.Tensor:
    """A neural source-filter excitation: one sine per sounding key, at the key's equal-tempered
    pitch, its amplitude ``relu(2 p - 1)`` of the key's activity ``p`` (labels give 1; a note
    head's probability counts from 0.5), linearly interpolated between frame centres.

    The phase is the sample's absolute time, so any slice of the excitation equals the
    excitation of the slice's samples: chunks and streams join without a seam.

    Args:
        notes: (B, 2 * 88, F) activity then onsets per key and frame of ``hop`` samples.
        length: Samples T wanted (frames beyond the notes are silent).
        hop: Samples per note frame.
        sr: Sample rate.

    Returns:
        (B, 1, T).
    """
    from umt.labels import KEYS, LOWEST

    amp = (2 * notes[:, :KEYS].float() - 1).clamp_min(0)  # (B, 88, F)
    freq = 440.0 * 2.0 ** ((torch.arange(KEYS, device=notes.device) + LOWEST - 69) / 12)
    out = torch.zeros(notes.shape[0], 1, length, device=notes.device)
    centre = (torch.arange(amp.shape[-1], device=notes.device) + 0.5) * hop
    for a in range(0, length, EXCITATION_PIECE):
        t = torch.arange(a, min(length, a + EXCITATION_PIECE), device=notes.device)
        f0, f1 = max(0, a // hop - 1), min(amp.shape[-1], -(-t[-1].item() // hop) + 2)
        keys = torch.nonzero(amp[..., f0:f1].amax(dim=(0, 2)) > 0)[:, 0]
        if len(keys) == 0 or f0 >= f1:
            continue
        # frame position of each sample, for interpolating between frame centres
        pos = ((t + 0.5 - centre[f0]) / hop).clamp(0, f1 - f0 - 1)
        lo = pos.floor().long().clamp(max=max(0, f1 - f0 - 2))
        w = (pos - lo).clamp(0, 1)
        seg = amp[:, keys, f0:f1]  # (B, K, frames of the piece)
        gain = seg[..., lo] * (1 - w) + seg[..., (lo + 1).clamp(max=f1 - f0 - 1)] * w
        phase = 2 * torch.pi * ((freq[keys, None] * t.double() / sr) % 1.0)  # exact for long t
        out[:, 0, a : a + len(t)] = (gain * torch.sin(phase.float())).sum(1)
    return out.to(notes.dtype)


FEATURES: dict[str, Feature] = {
    "loudness": Feature(loudness, channels=1, hop=160),
    "source": Feature(source, channels=1, hop=1),
}
