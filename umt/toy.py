"""A toy dataset of synthetic instruments: melodies with different harmonic timbres.

Used by the tests and the Quickstart demo so that training runs anywhere in seconds; real data
comes from ``python -m data.synth`` (SoundFont renders) or your own recordings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from umt.audio import SAMPLE_RATE, save

# Relative amplitudes of harmonics 1..n: a pure tone, a bright saw-like tone, a hollow odd-only one.
TIMBRES = {
    "sine": [1.0],
    "saw": [1.0 / k for k in range(1, 9)],
    "square": [1.0 / k if k % 2 else 0.0 for k in range(1, 10)],
}


def melody(rng: np.random.Generator, seconds: float, note_s: float = 0.25) -> list[float]:
    """Random MIDI pitches from a C-major scale, one per ``note_s``."""
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    return [60.0 + float(rng.choice(scale)) for _ in range(int(seconds / note_s))]


def render(pitches: list[float], timbre: list[float], note_s: float = 0.25) -> np.ndarray:
    """Additive synthesis of a melody with a decaying envelope per note. Returns (T,) float32."""
    n = int(note_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    env = np.exp(-3.0 * t) * np.minimum(1.0, t / 0.01)
    notes = []
    for p in pitches:
        f0 = 440.0 * 2 ** ((p - 69) / 12)
        tone = sum(a * np.sin(2 * np.pi * f0 * k * t) for k, a in enumerate(timbre, 1) if a)
        notes.append(env * tone)
    wav = np.concatenate(notes)
    return (0.5 * wav / np.abs(wav).max()).astype(np.float32)


def make_toy_dataset(
    root: str | Path,
    domains: tuple[str, ...] = ("sine", "saw"),
    files: int = 4,
    seconds: float = 2.0,
    seed: int = 0,
) -> Path:
    """Write ``root/<domain>/piece<i>.wav``: the same melodies played by each toy instrument."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    melodies = [melody(rng, seconds) for _ in range(files)]
    for name in domains:
        for i, pitches in enumerate(melodies):
            save(root / name / f"piece{i}.wav", render(pitches, TIMBRES[name]))
    return root
