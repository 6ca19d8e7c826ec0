"""Pitch preservation: frame-wise f0 agreement (monophonic) and chroma agreement (any texture)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from umt.audio import SAMPLE_RATE

HOP = 160  # 10 ms frames at 16 kHz, CREPE's native step
FMIN, FMAX = 50.0, 2000.0
# Frames this far below the clip's loudest frame are unvoiced whatever CREPE says: synth tails.
SILENCE_DB = -40.0
PERIODICITY = 0.4


@dataclass
class PitchTrack:
    """Frame-wise f0 in Hz (F,) and voicing flags (F,), one frame per 10 ms."""

    f0: np.ndarray
    voiced: np.ndarray


def track_pitch(wav: np.ndarray, device: str = "cpu") -> PitchTrack:
    """Track f0 with torchcrepe's ``tiny`` model (its weights ship in its wheel).

    Args:
        wav: Audio (T,) at 16 kHz.
        device: Torch device for the pitch network.

    Returns:
        A PitchTrack with F = T // 160 + 1 frames.
    """
    import torchcrepe  # imports torchaudio and resampy: only paid when pitch is measured

    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None]  # (1, T)
    f0, per = torchcrepe.predict(x, SAMPLE_RATE, HOP, FMIN, FMAX, model="tiny",
                                 decoder=torchcrepe.decode.weighted_argmax,
                                 return_periodicity=True, batch_size=512, device=device)
    per = torchcrepe.filter.median(per, 3)
    f0, per = f0[0].cpu().numpy(), per[0].cpu().numpy()
    voiced = (per > PERIODICITY) & (frame_db(wav, len(f0)) > SILENCE_DB)
    return PitchTrack(f0.astype(np.float64), voiced)


def frame_db(wav: np.ndarray, frames: int) -> np.ndarray:
    """RMS level (F,) of centred 1024-sample frames every 10 ms, in dB below the loudest."""
    pad = np.pad(wav.astype(np.float64), 512)
    idx = np.arange(frames)[:, None] * HOP + np.arange(1024)[None]
    rms = np.sqrt(np.mean(pad[np.minimum(idx, pad.size - 1)] ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms / rms.max())


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
