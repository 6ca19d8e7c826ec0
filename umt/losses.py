"""Spectral losses for training audio-rendering decoders (see :mod:`umt.nn.synth`)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


@lru_cache(maxsize=64)
def _window(n_fft: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cached periodic Hann window, (n_fft,): one per (size, device, dtype)."""
    return torch.hann_window(n_fft, periodic=True, device=device, dtype=dtype)


def stft_magnitude(audio: Tensor, n_fft: int, hop: int, eps: float = 1e-7) -> Tensor:
    """Magnitude spectrogram, floored at ``eps``.

    The floor sits under the square root, so the magnitude's gradient stays finite on silent
    bins (``|z|`` has none at 0) and the log term below needs no extra offset.

    Args:
        audio: (B, T) waveforms.
        n_fft: FFT and Hann window size. hop: hop between frames in samples.
        eps: smallest magnitude returned.

    Returns:
        (B, n_fft // 2 + 1, frames) magnitudes >= eps.
    """
    # Zero padding (not reflection) so clips shorter than half the largest FFT still work.
    spec = torch.stft(audio, n_fft, hop, window=_window(n_fft, audio.device, audio.dtype),
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real.square() + spec.imag.square()
    return power.clamp_min(eps * eps).sqrt()


def multi_resolution_stft_loss(pred: Tensor, target: Tensor,
                               fft_sizes: Sequence[int] = FFT_SIZES, overlap: float = 0.75,
                               eps: float = 1e-7) -> Tensor:
    """DDSP multi-scale spectral loss.

    Per FFT size: ``mean|S_p - S_t| + mean|log S_p - log S_t|``, each mean taken over every
    batch item, bin and frame (so sizes with more bins do not weigh more); the result is the
    mean of that over the sizes. Magnitudes are floored at ``eps`` (see
    :func:`stft_magnitude`), so the loss is exactly 0 for identical inputs.

    Args:
        pred: (B, T) or (T,) rendered audio.
        target: same shape as ``pred``.
        fft_sizes: FFT sizes; each uses a Hann window of its own size.
        overlap: fraction of a window shared with the next; hop = ``round(n (1 - overlap))``.
        eps: magnitude floor.

    Returns:
        Scalar loss.

    Raises:
        ValueError: shapes differ, or an empty list of sizes.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if not fft_sizes:
        raise ValueError("fft_sizes is empty")
    pred, target = pred.reshape(-1, pred.shape[-1]), target.reshape(-1, target.shape[-1])
    total = pred.new_zeros(())
    for n_fft in fft_sizes:
        hop = max(1, round(n_fft * (1.0 - overlap)))
        sp = stft_magnitude(pred, n_fft, hop, eps)
        st = stft_magnitude(target, n_fft, hop, eps)
        total = total + (sp - st).abs().mean() + (sp.log() - st.log()).abs().mean()
    return total / len(fft_sizes)
