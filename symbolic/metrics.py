"""Symbolic music statistics on symusic scores (tick times at the score's resolution)."""

from __future__ import annotations

import math

import numpy as np
import symusic

# Pitch-class sets of the 12 major and 12 natural-minor scales.
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
SCALES = [{(r + s) % 12 for s in steps} for steps in (_MAJOR, _MINOR) for r in range(12)]


def all_notes(score: symusic.Score) -> list:
    """Every non-drum note of the score."""
    return [n for t in score.tracks if not t.is_drum for n in t.notes]


def pitch_class_entropy(notes: list) -> float:
    """Entropy (bits) of the pitch-class histogram; nan without notes."""
    if not notes:
        return math.nan
    hist = np.bincount([n.pitch % 12 for n in notes], minlength=12) / len(notes)
    hist = hist[hist > 0]
    return float(-(hist * np.log2(hist)).sum())


def scale_consistency(notes: list) -> float:
    """Largest share of notes inside one major or minor scale."""
    if not notes:
        return math.nan
    pcs = [n.pitch % 12 for n in notes]
    return max(sum(pc in s for pc in pcs) for s in SCALES) / len(pcs)


def groove_consistency(notes: list, bar_ticks: int, grid: int) -> float:
    """1 - mean Hamming distance between onset patterns of neighbouring bars (``grid`` slots)."""
    if not notes or bar_ticks <= 0:
        return math.nan
    n_bars = max(n.time for n in notes) // bar_ticks + 1
    pattern = np.zeros((n_bars, grid), dtype=bool)
    for n in notes:
        pattern[n.time // bar_ticks, (n.time % bar_ticks) * grid // bar_ticks] = True
    if n_bars < 2:
        return math.nan
    return float(1 - (pattern[1:] != pattern[:-1]).mean())


def sounding(notes: list, t: int) -> list:
    """Notes sounding at tick ``t``."""
    return [n for n in notes if n.time <= t < n.time + n.duration]


def empty_beat_rate(notes: list, start: int, end: int, beat: int) -> float:
    """Share of beats in [start, end) where no note sounds."""
    beats = range(start, end, beat)
    if not beats:
        return math.nan
    return sum(not sounding(notes, t) for t in beats) / len(beats)


def polyphony(notes: list, start: int, end: int, step: int) -> float:
    """Mean number of sounding pitches over the time steps where at least one sounds."""
    counts = [len({n.pitch for n in sounding(notes, t)}) for t in range(start, end, step)]
    counts = [c for c in counts if c > 0]
    return float(np.mean(counts)) if counts else math.nan


def beat_pitch_classes(notes: list, start: int, end: int, beat: int) -> list[frozenset[int]]:
    """Pitch-class set sounding at every beat onset in [start, end)."""
    return [frozenset(n.pitch % 12 for n in sounding(notes, t)) for t in range(start, end, beat)]


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b|, 1 when both are empty."""
    return len(a & b) / len(a | b) if a | b else 1.0


def chord_root(pcs: frozenset[int], bass: int | None) -> int | None:
    """Root of a pitch-class set: the pc whose triad (root, third, fifth) covers most of the set.

    Ties prefer the bass note's pitch class. None for an empty set.
    """
    if not pcs:
        return None

    def score(r: int) -> tuple[int, int, int]:
        third = ((r + 3) % 12 in pcs) or ((r + 4) % 12 in pcs)
        return (int(third) + int((r + 7) % 12 in pcs), int(r == bass), -r)

    return max(pcs, key=score)


# Krumhansl and Kessler (1982) probe-tone profiles, tonic first, for the Krumhansl-Schmuckler
# key finder.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# A key's notes: the major scale, or the natural minor with its raised 7th (the leading note of
# harmonic minor, which cadences in minor rely on).
_KEY_MINOR = (0, 2, 3, 5, 7, 8, 10, 11)


def find_key(notes: list) -> tuple[int, bool] | None:
    """Krumhansl-Schmuckler key of the notes: (tonic pitch class, is_major); None without notes.

    The duration-weighted pitch-class histogram is correlated with the 24 rotated
    Krumhansl-Kessler profiles; the best correlation wins (ties: major, then the lower tonic).
    """
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += max(n.duration, 1)
    if not hist.any():
        return None
    if not hist.std():  # all twelve equal: no correlation, every key ties
        return 0, True
    best, key = -2.0, None
    for major, profile in ((True, KK_MAJOR), (False, KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best + 1e-12:
                best, key = r, (tonic, major)
    return key


def key_pitch_classes(key: tuple[int, bool]) -> frozenset[int]:
    """Pitch classes of a key from :func:`find_key`."""
    tonic, major = key
    return frozenset((tonic + s) % 12 for s in (_MAJOR if major else _KEY_MINOR))


# Chords that count as one consonant harmony, as intervals above the root: the four triads and
# the dominant seventh, complete or with the fifth left out (as four-part writing often does).
_CHORDS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 4, 10), (0, 4), (0, 3))
CONSONANT = frozenset(frozenset((r + i) % 12 for i in c) for c in _CHORDS for r in range(12))


def is_consonant(pcs: frozenset[int]) -> bool:
    """Whether a sounding pitch-class set is one triad or dominant seventh (see ``CONSONANT``)."""
    return pcs in CONSONANT


def meter_at(sigs: list, t: int, beat: int) -> tuple[int, int, int, int]:
    """(numerator, denominator, start tick, bar length in ticks) of the time signature in force
    at tick ``t``: the last of ``sigs`` starting at or before it, else 4/4 from tick 0.
    ``beat``: ticks per quarter note."""
    sig = next((s for s in reversed(sigs) if s.time <= t), None)
    num, den, start = (sig.numerator, sig.denominator, sig.time) if sig else (4, 4, 0)
    return num, den, start, max(1, beat * 4 * num // den)


def bar_lines(score: symusic.Score, end: int) -> list[int]:
    """Start tick of every bar before ``end``, from the score's time signatures (4/4 if none)."""
    beat, sigs = score.ticks_per_quarter, sorted(score.time_signatures, key=lambda s: s.time)
    out, t = [], 0
    while t < end:
        out.append(t)
        t += meter_at(sigs, t, beat)[3]
    return out


def top_leaps(notes: list, lines: list[int], beat: int, interval: int = 7) -> list[bool]:
    """Per line tick (skipping tick 0 and lines where either side is silent): does the highest
    sounding pitch move by more than ``interval`` semitones from the beat before the line?"""
    out = []
    for t in lines:
        before, after = sounding(notes, t - beat), sounding(notes, t)
        if t >= beat and before and after:
            out.append(abs(max(n.pitch for n in after) - max(n.pitch for n in before)) > interval)
    return out
