"""The note head on the shared encoder: which of the 88 keys sound, and which start, per frame.

Trained on the exact notes of rendered MIDI (labels are the same whatever instrument played
them, so the head is instrument-free by construction). Its output is the ``notes`` conditioning
input (:mod:`umt.nn.condition`): 88 activity then 88 onset probabilities per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from umt.features import frame_mean
from umt.nn.voices import KEYS

THRESHOLD = 0.5  # a key sounds (or starts) where its probability is above this
# A frame has 1-4 of 88 keys sounding: unweighted BCE first learns "nothing sounds"; positives
# count this many times as much (the decoder reads notes thresholded at 0.5).
POSITIVE_WEIGHT = 4.0


class NoteHead(nn.Module):
    """Encoder features -> per-frame key activity and onset logits.

    Args:
        channels: Width of the encoder's hidden features.
        hop: Samples per frame.
    """

    def __init__(self, channels: int, hop: int) -> None:
        super().__init__()
        self.hop = hop
        self.hidden = nn.Linear(channels, 2 * channels)
        self.out = nn.Linear(2 * channels, 2 * KEYS)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (T, B, C) encoder features -> (B, 2 * 88, ceil(T / hop)) logits (activity, onset)."""
        frames = frame_mean(h.permute(1, 2, 0), self.hop)  # (B, C, F)
        return self.out(F.relu(self.hidden(frames.transpose(1, 2)))).transpose(1, 2)


def note_loss(logits: torch.Tensor, active: torch.Tensor, onsets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of activity and onsets: logits (B, 176, F), labels (B, 88, F') with F' >= F."""
    frames = logits.shape[-1]
    target = torch.cat([active[..., :frames], onsets[..., :frames]], 1)
    weight = torch.tensor(POSITIVE_WEIGHT, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weight)


def labels_as_input(active: torch.Tensor, onsets: torch.Tensor) -> torch.Tensor:
    """Labels in the form of the ``notes`` input: (B, 88, F) x 2 -> (B, 176, F)."""
    return torch.cat([active, onsets], 1).float()
