"""Pitch-shift augmentation of the encoder's input: keeps the encoder from memorising."""

from __future__ import annotations

import librosa
import numpy as np

from umt.audio import SAMPLE_RATE


def pitch_shift_segment(
    wav: np.ndarray,
    rng: np.random.Generator,
    max_semitones: float = 0.5,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Shift a random sub-segment (T/4 to T/2 long) by U(-max, +max) semitones.

    The rest of the signal is untouched and the length is kept, so the decoder's target (the clean
    signal) stays aligned with the encoder's input.

    Args:
        wav: (T,) float32 audio.
        rng: Source of randomness; the same state gives the same result.
        max_semitones: Largest shift in either direction.
        sr: Sample rate of ``wav``.

    Returns:
        (T,) float32 augmented copy.
    """
    T = len(wav)
    length = int(rng.integers(T // 4, T // 2 + 1))
    start = int(rng.integers(0, T - length + 1))
    steps = float(rng.uniform(-max_semitones, max_semitones))
    out = wav.astype(np.float32, copy=True)
    if steps == 0.0 or length < 2:
        return out
    piece = out[start : start + length]
    n_fft = min(512, 1 << (length.bit_length() - 1))
    # soxr_hq takes seconds on the irrational rate ratios a pitch shift needs; mq takes ms.
    shifted = librosa.effects.pitch_shift(
        piece, sr=sr, n_steps=steps, n_fft=n_fft, res_type="soxr_mq"
    )
    out[start : start + length] = shifted[:length]
    return out
