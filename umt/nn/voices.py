"""Voice allocation: which sounding note each of a frame decoder's harmonic banks plays.

A note keeps its voice while it sounds, so a bank's phase and envelope run on through the note;
a new note takes a free voice (higher notes first: the melody is kept when more notes sound than
there are voices), and a note left without one takes the next voice that frees (with no onset
flag: it was not struck then); a note struck again while held restarts its voice's age.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from umt.labels import KEYS, LOWEST
from umt.nn.synth import midi_to_hz

DECAY_FRAMES = (5.0, 20.0, 80.0)  # time constants of the age features, in frames
FEATURES = 3 + len(DECAY_FRAMES)  # pitch, active, onset, decays


@dataclass
class VoiceState:
    """Per sequence and voice: the key it plays (-1 = free) and frames since its onset."""

    keys: np.ndarray  # (B, V) int64
    age: np.ndarray  # (B, V) int64

    @classmethod
    def start(cls, batch: int, voices: int) -> VoiceState:
        """Every voice free, before the first frame."""
        return cls(np.full((batch, voices), -1, np.int64), np.zeros((batch, voices), np.int64))


@dataclass
class Voices:
    """Allocated voices of a chunk of frames.

    Attributes:
        keys: (B, F, V) int64 key index 0..87 each voice plays, -1 when silent.
        onset: (B, F, V) bool: the voice's note starts in this frame.
        age: (B, F, V) int64 frames since the voice's onset.
    """

    keys: np.ndarray
    onset: np.ndarray
    age: np.ndarray

    def f0(self, like: torch.Tensor) -> torch.Tensor:
        """(B, F, V) fundamentals in Hz (0 where silent), on ``like``'s device and dtype."""
        keys = torch.from_numpy(self.keys).to(like.device)
        hz = midi_to_hz(keys.double() + LOWEST).to(like.device)  # float64: exact under bf16
        return torch.where(keys >= 0, hz, torch.zeros_like(hz)).to(torch.float32)

    def features(self, like: torch.Tensor) -> torch.Tensor:
        """(B, F, V, FEATURES): pitch in [0, 1], active, onset, exp(-age / tau) per tau."""
        keys = torch.from_numpy(self.keys).to(like.device)
        active = (keys >= 0).to(like.dtype)
        pitch = keys.clamp_min(0).to(like.dtype) / (KEYS - 1) * active
        onset = torch.from_numpy(self.onset).to(like.device, like.dtype)
        age = torch.from_numpy(self.age).to(like.device, like.dtype)
        decays = [torch.exp(-age / tau) * active for tau in DECAY_FRAMES]
        return torch.stack([pitch, active, onset, *decays], -1)


def allocate(active: np.ndarray, onsets: np.ndarray, voices: int,
             state: VoiceState | None = None) -> tuple[Voices, VoiceState]:
    """Assign the sounding keys of every frame to voices.

    Args:
        active: (B, KEYS, F) bool, the keys sounding in each frame.
        onsets: (B, KEYS, F) bool, the keys struck in each frame.
        voices: Voices available.
        state: The previous chunk's final state (None at the start).

    Returns:
        The chunk's voices, and the state to carry into the next chunk.
    """
    B, _, F = active.shape
    state = state or VoiceState.start(B, voices)
    keys, age = state.keys.copy(), state.age.copy()
    out_keys = np.empty((B, F, voices), np.int64)
    out_onset = np.zeros((B, F, voices), bool)
    out_age = np.empty((B, F, voices), np.int64)
    for b in range(B):
        for f in range(F):
            sounding = np.flatnonzero(active[b, :, f])
            struck = onsets[b, :, f]
            was_free = keys[b] < 0
            keep = ~was_free & np.isin(keys[b], sounding)
            keys[b, ~keep] = -1
            age[b] += 1
            restrike = keep & struck[keys[b].clip(0)]
            age[b, restrike] = 0
            out_onset[b, f, restrike] = True
            new = sounding[~np.isin(sounding, keys[b])][::-1]  # highest first
            # Voices free before this frame first: one that just ended a note would glide
            # from it to the new note over the frame (the synth interpolates its pitch).
            free = np.flatnonzero(keys[b] < 0)
            free = free[np.argsort(~was_free[free], kind="stable")][: len(new)]
            keys[b, free] = new[: len(free)]
            age[b, free] = 0
            out_onset[b, f, free] = struck[keys[b, free]]  # a late voice is no new strike
            out_keys[b, f], out_age[b, f] = keys[b], age[b]
    return Voices(out_keys, out_onset, out_age), VoiceState(keys, age)
