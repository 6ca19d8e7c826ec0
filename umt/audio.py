"""Audio I/O and mu-law companding. Everything inside umt is 16 kHz mono float32 in [-1, 1]."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from plumbing.atomic import atomic_path
from umt.errors import UmtError

SAMPLE_RATE = 16_000
MU = 255
_SFE_SYSTEM = 2  # libsndfile's code for an error of the OS
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO}


def load(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read any soundfile-readable file as mono float32 at ``sr``.

    Args:
        path: Audio file (wav, flac, ogg, aiff, ...), any rate, any channel count.
        sr: Target sample rate.

    Returns:
        Array of shape (T,), float32.

    Raises:
        UmtError: the file is missing, not audio, corrupt, or holds NaN/inf samples.
    """
    path = Path(path)
    if not path.is_file():
        raise UmtError(f"no such file: {path}")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise UmtError(f"cannot read audio from {path}: {err}") from None
    if not np.isfinite(data).all():
        raise UmtError(f"{path} holds NaN or infinite samples")
    return resample(data.mean(axis=1), file_sr, sr)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal (T,) from ``sr_in`` to ``sr_out`` (soxr, high quality)."""
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    if sr_in == sr_out or wav.size == 0:
        return wav
    return soxr.resample(wav, sr_in, sr_out, quality="HQ").astype(np.float32)


def save(path: str | os.PathLike, wav: np.ndarray | torch.Tensor, sr: int = SAMPLE_RATE) -> None:
    """Write a mono 16-bit wav atomically (:func:`plumbing.atomic.atomic_path`: a temp file in
    the same folder, fsync, rename), creating its folder.

    Args:
        path: Destination.
        wav: Samples of shape (T,) in [-1, 1] (clipped beyond).
        sr: Sample rate of ``wav``.

    Raises:
        UmtError: the file cannot be written (a full disk, a read-only or unwritable folder),
            naming it and the cause; neither the file nor its temp file is left behind.
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().float().cpu().numpy()
    with atomic_path(path) as tmp:
        try:
            sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
        except sf.LibsndfileError as err:
            raise _os_error(err, tmp) from None


def _os_error(err: sf.LibsndfileError, tmp: Path) -> Exception:
    """libsndfile reports every failure of the OS as "System error" without its cause; the C
    errno still holds it, so that a full disk is named as one."""
    code = getattr(getattr(sf, "_ffi", None), "errno", 0)
    if err.code == _SFE_SYSTEM and code in _DISK_ERRNOS:
        return OSError(code, os.strerror(code), str(tmp))
    return err


def normalize_loudness(
    wav: np.ndarray, target_rms_db: float = -20.0, peak: float = 0.95
) -> np.ndarray:
    """Scale to a target RMS level, limited so the peak stays below ``peak``.

    Silence stays silent.
    """
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms < 1e-6:
        return wav.astype(np.float32)
    gain = 10 ** (target_rms_db / 20) / rms
    gain = min(gain, peak / max(float(np.abs(wav).max()), 1e-9))
    return (wav * gain).astype(np.float32)


def mu_law_encode(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Float audio in [-1, 1] (any shape) to integer classes in [0, mu] (same shape, int64)."""
    x = x.clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / torch.log1p(torch.tensor(float(mu)))
    return ((y + 1) / 2 * mu + 0.5).long()


def mu_law_decode(q: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Integer classes in [0, mu] (any shape) back to float audio in [-1, 1] (same shape)."""
    y = 2 * q.float() / mu - 1
    return torch.sign(y) * ((1 + mu) ** y.abs() - 1) / mu
