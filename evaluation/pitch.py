"""Pitch preservation: frame-wise f0 agreement (monophonic) and chroma agreement (any texture)."""

from __future__ import annotations

import numpy as np

from umt.audio import SAMPLE_RATE

# The tracker lives in the core (translate.py --pitch tracker uses it); scored here.
from umt.tracker import HOP, SILENCE_DB, PitchTrack, frame_db, track_pitch  # noqa: F401


def cents(f_est: np.ndarray, f_ref: np.ndarray) -> np.ndarray:
    """Signed distance in cents from ``f_ref`` to ``f_est`` (same shape)."""
    return 1200 * np.log2(np.maximum(f_est, 1e-6) / np.maximum(f_ref, 1e-6))


def pitch_scores(est: PitchTrack, ref: PitchTrack, tol_cents: float = 50.0) -> dict[str, float]:
    """Raw pitch / chroma accuracy and voicing agreement of ``est`` against ``ref``.

    Follows mir_eval: accuracies count the reference's voiced frames where the estimate's f0 lies
    within ``tol_cents`` (chroma: after folding octaves); voicing agreement counts all frames.
    Tracks are cut to the shorter one.
    """
    n = min(len(est.f0), len(ref.f0))
    e, r = est.f0[:n], ref.f0[:n]
    ev, rv = est.voiced[:n], ref.voiced[:n]
    diff = cents(e, r)
    folded = np.abs(diff - 1200 * np.round(diff / 1200))
    nan = float("nan")
    return {
        "rpa": float(np.mean(np.abs(diff[rv]) <= tol_cents)) if rv.any() else nan,
        "rca": float(np.mean(folded[rv] <= tol_cents)) if rv.any() else nan,
        "voicing": float(np.mean(ev == rv)) if n else nan,
    }


def chroma(wav: np.ndarray) -> np.ndarray:
    """Constant-Q chroma (12, F) at 10 ms frames, with the frame energy kept (not normalised).

    Three bins per semitone, of which only the centre one is kept: the side bins mostly hold
    leakage from the neighbouring semitones, which would make a semitone error look similar.
    """
    import librosa

    C = np.abs(librosa.cqt(wav.astype(np.float32), sr=SAMPLE_RATE, hop_length=HOP,
                           fmin=librosa.note_to_hz("C2"), n_bins=6 * 36, bins_per_octave=36))
    return C.reshape(6, 12, 3, -1)[:, :, 1].sum(axis=0)  # (12, F): six octaves from C2 folded


def chroma_similarity(est: np.ndarray, ref: np.ndarray) -> float:
    """Mean cosine similarity of chroma vectors over the frames where the reference sounds.

    Args:
        est: Audio (T,) at 16 kHz.
        ref: Audio (T,) at 16 kHz.

    Returns:
        1.0 for identical pitch content, about 0.15 for a line a semitone off (more for chords,
        whose notes share pitch classes); nan for a silent reference.
    """
    a, b = chroma(est), chroma(ref)
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n], b[:, :n]
    energy = b.sum(axis=0)
    loud = energy > energy.max() * 10 ** (SILENCE_DB / 20) if n else np.zeros(0, bool)
    if not loud.any():
        return float("nan")
    num = (a * b).sum(axis=0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-12
    return float(np.mean((num / den)[loud]))
