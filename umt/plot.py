"""Spectrogram pictures of a translation: the input above, the output below."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plumbing.atomic import atomic_path
from umt.audio import SAMPLE_RATE


def save_spectrograms(path: str | Path, panels: dict[str, np.ndarray], sr: int = SAMPLE_RATE
                      ) -> None:
    """Write a PNG with one log-magnitude spectrogram per panel, atomically.

    Args:
        path: Destination ``.png``.
        panels: Title -> (T,) float audio at ``sr``, drawn top to bottom in order.
        sr: Sample rate of every panel.

    Raises:
        UmtError: the file cannot be written (a full disk...), naming it and the cause.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; also safe inside worker processes
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels)), squeeze=False)
    for ax, (title, wav) in zip(axes[:, 0], panels.items(), strict=True):
        wav = np.asarray(wav, dtype=np.float32)
        if wav.size < 1024:
            wav = np.pad(wav, (0, 1024 - wav.size))
        ax.specgram(wav, NFFT=1024, Fs=sr, noverlap=768, cmap="magma", vmin=-120)
        ax.set_title(title)
        ax.set_ylabel("Hz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
