"""Translation inputs and outputs: audio files and folders found and checked before any work, and
the names of the outputs (which are never taken as inputs)."""

from __future__ import annotations

import os
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
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


@dataclass
class Inputs:
    """What :func:`collect` found.

    Attributes:
        jobs: The inputs, sorted within each folder for a stable sharding.
        errors: One message per path that does not exist or holds nothing to translate.
        translations: Files passed over because they are this tool's own outputs.
    """

    jobs: list[Job] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    translations: list[Path] = field(default_factory=list)


def output_name(src: Path, to: str) -> str:
    """The file name a translation of ``src`` into ``to`` gets: ``<stem>.<to>.wav``."""
    return f"{src.stem}.{to}.wav"


def is_translation(path: Path, instruments: Collection[str]) -> bool:
    """Whether ``path`` is named like an output of ours, ``<stem>.<instrument>.wav``."""
    return any(path.name.endswith(f".{to}.wav") and len(path.name) > len(to) + 5
               for to in instruments)


def collect(paths: list[Path], instruments: Collection[str] = ()) -> Inputs:
    """Expand files and folders (recursively) into jobs.

    Outputs of this tool are never inputs, so that translations written beside the originals
    (``-o`` the input folder) are not translated again on the next run: files named
    ``<stem>.<instrument>.wav`` for one of ``instruments``, and hidden files (our temp files are
    ``.<name>.<pid>.tmp``).

    Args:
        paths: Files or folders given by the user.
        instruments: Every instrument the model knows.
    """
    found = Inputs()
    for path in paths:
        if path.is_dir():
            _scan(path, instruments, found)
        elif not path.exists():
            found.errors.append(f"no such file or folder: {path}")
        elif is_translation(path, instruments):
            found.translations.append(path)
        else:  # a file named by the user is tried whatever it is
            found.jobs.append(Job(path, Path(".")))
    return found


def _scan(folder: Path, instruments: Collection[str], found: Inputs) -> None:
    """Add a folder's audio files to ``found``; a folder without any is an error."""
    jobs, skipped = 0, 0
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.suffix.lower() not in AUDIO_SUFFIXES or f.name.startswith("."):
            continue
        if is_translation(f, instruments):
            found.translations.append(f)
            skipped += 1
        else:
            found.jobs.append(Job(f, f.parent.relative_to(folder)))
            jobs += 1
    if not jobs:
        why = (f"only translations ({skipped}, named name.<instrument>.wav)" if skipped
               else "no audio files")
        found.errors.append(f"nothing to translate in {folder}: {why}")


def outputs_of(job: Job, out: Path, targets: list[str]) -> dict[str, Path]:
    """Output path per target instrument: OUT/<mirrored folder>/<stem>.<instrument>.wav."""
    return {to: out / job.rel / output_name(job.src, to) for to in targets}


def drop_clashes(jobs: list[Job], out: Path, targets: list[str]) -> tuple[list[Job], list[str]]:
    """Drop inputs whose outputs another input already claims (same name, same folder)."""
    owner: dict[Path, Path] = {}
    kept, errors = [], []
    for job in jobs:
        path = outputs_of(job, out, targets)[targets[0]].resolve()
        if path in owner:
            errors.append(f"{job.src} and {owner[path]} would both write {path.name}; "
                          "translate them into different --out folders")
            continue
        owner[path] = job.src
        kept.append(job)
    return kept, errors


def shard(jobs: list, env: Mapping[str, str] | None = None) -> list:
    """The jobs of this rank under torchrun (RANK / WORLD_SIZE), all of them otherwise."""
    env = os.environ if env is None else env
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return jobs[rank::world]


@dataclass
class Work:
    """What a run has left to do.

    Attributes:
        todo: Each input of this rank with outputs to write, and its {target: output path}.
        done: Inputs of this rank whose outputs all exist.
        errors: One message per path that does not exist or holds nothing to translate, and per
            input whose outputs another input already claims.
        translations: Files passed over because they are this tool's own outputs.
    """

    todo: list[tuple[Path, dict[str, Path]]]
    done: int
    errors: list[str]
    translations: list[Path]


def plan_work(paths: list[Path], out: Path, targets: list[str], instruments: Collection[str],
              overwrite: bool = False, env: Mapping[str, str] | None = None) -> Work:
    """Find the inputs, this rank's share of them, and the outputs each still lacks.

    Args:
        paths: Files or folders given by the user.
        out: Output folder (folders are mirrored under it); may be an input folder.
        targets: Target instruments.
        instruments: Every instrument the model knows (their outputs are never inputs).
        overwrite: Redo outputs that exist.
        env: Environment with torchrun's RANK / WORLD_SIZE (default: ``os.environ``).

    Raises:
        UmtError: every path named is a translation, so there is nothing to translate.
    """
    found = collect(paths, instruments)
    jobs, clashes = drop_clashes(found.jobs, out, targets)
    if not jobs and not found.errors and not clashes:
        raise UmtError(f"nothing to translate: {found.translations[0]} is a translation "
                       "(name.<instrument>.wav); rename it to translate it again")
    todo, done = [], 0
    for job in shard(jobs, env):
        outs = {to: path for to, path in outputs_of(job, out, targets).items()
                if overwrite or not path.exists()}
        if outs:
            todo.append((job.src, outs))
        else:
            done += 1
    return Work(todo, done, found.errors + clashes, found.translations)


def check_writable(out: Path) -> None:
    """Fail before any work if ``out`` cannot be created or written (nothing is created here)."""
    if out.exists() and not out.is_dir():
        raise UmtError(f"output folder {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UmtError(f"cannot write to output folder {out} ({probe} is not writable)")


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
