"""Distances between a translation and the render of the same notes on the target instrument."""

from __future__ import annotations

import numpy as np
import torch

from umt.audio import SAMPLE_RATE, normalize_loudness

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the multi-res STFT
DB_RANGE = 80.0


def _prepare(est: np.ndarray, ref: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut both to the shorter length and bring both to the same loudness: level is not timbre."""
    n = min(est.size, ref.size)
    e = normalize_loudness(np.asarray(est[:n], dtype=np.float32))
    r = normalize_loudness(np.asarray(ref[:n], dtype=np.float32))
    return torch.from_numpy(e), torch.from_numpy(r)


def _magnitude(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """STFT magnitude (n_fft // 2 + 1, F) of a signal (T,)."""
    win = torch.hann_window(n_fft)
    return torch.stft(x, n_fft, hop, window=win, return_complex=True).abs()


def log_mel_distance(est: np.ndarray, ref: np.ndarray, n_mels: int = 80) -> float:
    """Mean absolute difference in dB between log-mel spectrograms (0 for identical signals).

    Args:
        est: Audio (T,) at 16 kHz.
        ref: Audio (T',) at 16 kHz; both are cut to the shorter and loudness-matched.

    Returns:
        Distance in dB, floors clamped 80 dB under the reference's peak.
    """
    import torchaudio

    e, r = _prepare(est, ref)
    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=1024, hop_length=256,
                                               n_mels=n_mels, power=2.0)
    me, mr = (10 * torch.log10(mel(x) + 1e-10) for x in (e, r))  # (n_mels, F)
    floor = mr.max() - DB_RANGE
    return float((me.clamp(min=floor) - mr.clamp(min=floor)).abs().mean())


def mr_stft_distance(est: np.ndarray, ref: np.ndarray) -> float:
    """Multi-resolution STFT distance: spectral convergence + log-magnitude L1, averaged.

    The loss of Parallel WaveGAN (Yamamoto et al. 2020) used as a metric: 0 for identical signals.

    Args:
        est: Audio (T,) at 16 kHz.
        ref: Audio (T',) at 16 kHz; both are cut to the shorter and loudness-matched.
    """
    e, r = _prepare(est, ref)
    total = 0.0
    for n_fft, hop in RESOLUTIONS:
        se, sr = _magnitude(e, n_fft, hop), _magnitude(r, n_fft, hop)
        sc = torch.linalg.norm(sr - se) / torch.linalg.norm(sr).clamp(min=1e-8)
        mag = (torch.log(se.clamp(min=1e-5)) - torch.log(sr.clamp(min=1e-5))).abs().mean()
        total += float(sc + mag)
    return total / len(RESOLUTIONS)
