"""Reading translation inputs: audio files and folders, checked before any work is done."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from umt.audio import SAMPLE_RATE, load
from umt.errors import UmtError

# Extensions picked up when scanning a folder (explicitly named files are tried whatever they are).
AUDIO_SUFFIXES = {f".{k.lower()}" for k in sf.available_formats()} | {".aif", ".oga", ".opus"}


@dataclass(frozen=True)
class Job:
    """One input file and the folder (relative to the output root) its outputs go to."""

    src: Path
    rel: Path


def collect(paths: list[Path], exclude: Path | None = None) -> tuple[list[Job], list[str]]:
    """Expand files and folders (recursively) into jobs, sorted for a stable sharding.

    Args:
        paths: Files or folders given by the user.
        exclude: A folder whose files are never inputs (the output folder, when inside an input).

    Returns:
        The jobs, and one error message per path that does not exist.
    """
    jobs, errors = [], []
    skip = exclude.resolve() if exclude is not None else None
    for path in paths:
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if (f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                        and not f.name.startswith(".")
                        and (skip is None or not f.resolve().is_relative_to(skip))):
                    jobs.append(Job(f, f.parent.relative_to(path)))
        elif path.exists():
            jobs.append(Job(path, Path(".")))
        else:
            errors.append(f"no such file or folder: {path}")
    return jobs, errors


def wav_is_truncated(path: Path) -> bool:
    """Whether a RIFF/WAVE file is shorter than its ``data`` chunk declares.

    libsndfile silently reads what is there, so a half-copied file would otherwise pass.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                # 0 and 0xFFFFFFFF mean "unknown" (streamed writers, RF64-style files).
                return n not in (0, 0xFFFFFFFF) and pos + 8 + n > size
            pos += 8 + n + (n & 1)
    return False


def read_input(path: Path) -> tuple[np.ndarray, int]:
    """Load one input as mono 16 kHz float32, with its original sample rate.

    Returns:
        (T,) float32 at 16 kHz, and the file's own sample rate.

    Raises:
        UmtError: missing, not audio, truncated, NaN/inf samples (empty and silent signals are
            caught by :func:`umt.inference.check_audio`).
    """
    wav = load(path, SAMPLE_RATE)
    if wav_is_truncated(path):
        raise UmtError(f"{path} is truncated (shorter than its header says)")
    return wav, sf.info(str(path)).samplerate
