"""Translating many files at once: consecutive short inputs share generation batches.

    from umt.batch import translate_files

    for r in translate_files(translator, ["a.wav", "b.flac"], ["piano", "violin"]):
        if r.error is None:  # else: r.error says why r.src gave nothing
            r.save(f"{r.src.stem}.{r.to}.wav")

Inputs are read and encoded in order into a *pack* until their chunks fill one batch (or
:data:`PACK_STEPS` samples); each target's decoder then samples the whole pack at once
(:meth:`umt.inference.Translator.decode_many`), and the pack's results for that target are
yielded before the next target is decoded, so a caller that writes them as they come loses at
most one target of one pack to an interruption. Each input keeps its own chunks and seeded noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plumbing.atomic import remove_stale_temps
from plumbing.errors import UserError
from umt.audio import SAMPLE_RATE, resample, save
from umt.checkpoint import check_instruments
from umt.inference import Latent, Translator, check_audio
from umt.inputs import read_input

# Most samples generated for one pack of inputs: their noise and classes take 12 bytes a sample
# (200 MB here), and a 10-minute input with its warm-ups still fits alone.
PACK_STEPS = 16_000_000

# An input: a path (translated into every target), or a path and the targets it still needs.
FileJob = str | os.PathLike | tuple[str | os.PathLike, Sequence[str]]
# (the inputs of the pack being generated, its steps done, its steps in all), over every target
PackProgress = Callable[[tuple[Path, ...], int, int], None]


@dataclass(frozen=True)
class Result:
    """One finished translation, or the reason an input gave none.

    Attributes:
        index: Position of the input in the jobs given.
        src: The input file.
        to: Target instrument; None when ``error`` is set.
        audio: (T16,) float32 at 16 kHz, the translation; None when ``error`` is set.
        rate: The input file's own sample rate (to write the output at it).
        input: (T16,) float32 at 16 kHz, the input itself, when ``keep_input`` was asked.
        error: Why the input cannot be translated (unreadable, truncated, empty, silent...).
    """

    index: int
    src: Path
    to: str | None = None
    audio: np.ndarray | None = None
    rate: int = SAMPLE_RATE
    input: np.ndarray | None = None
    error: UserError | None = None

    def save(self, path: str | os.PathLike, keep_rate: bool = False, plot: bool = False) -> None:
        """Write the translation as a 16-bit wav, atomically (temp files that a killed writer
        left for ``path`` are removed first).

        Args:
            path: Destination; its folder is created.
            keep_rate: At the input's own sample rate instead of 16 kHz.
            plot: Also write the spectrograms beside it (``.png``): the input's (when kept,
                ``keep_input``) above the output's.

        Raises:
            UserError: the file cannot be written (a full disk...), naming it and the cause.
        """
        path = Path(path)
        remove_stale_temps(path)
        rate = self.rate if keep_rate else SAMPLE_RATE
        save(path, resample(self.audio, SAMPLE_RATE, rate), rate)
        if plot:
            from umt.plot import save_spectrograms  # matplotlib, only when asked for

            panels = {} if self.input is None else {f"input: {self.src.name}": self.input}
            save_spectrograms(path.with_suffix(".png"), {**panels,
                                                         f"output: {path.name}": self.audio})


@dataclass
class _Pending:
    """An input read and encoded, waiting for its pack to be decoded."""

    index: int
    src: Path
    targets: list[str]
    latent: Latent
    rate: int
    wav: np.ndarray | None  # the input at 16 kHz, kept only when asked for
    chunks: int  # rows of a generation batch it takes
    steps: int  # samples generated for it


def translate_files(
    translator: Translator,
    jobs: Iterable[FileJob],
    targets: Sequence[str],
    *,
    seed: int | None = 0,
    temperature: float | None = None,
    keep_input: bool = False,
    progress: PackProgress | None = None,
) -> Iterator[Result]:
    """Translate many files, their chunks sharing generation batches.

    Each output is what ``translator.decode(translator.encode(wav, sr), to, seed=seed)`` gives
    for its file alone (the shipped model on the CPU: bit for bit).

    Args:
        translator: The model.
        jobs: Input files, each a path or ``(path, its targets)`` (a subset of ``targets``).
        targets: Target instruments of the plain paths; the first sizes the packs.
        seed, temperature: Sampling, as in :meth:`Translator.decode`.
        keep_input: Also hand back each input at 16 kHz (for pictures).
        progress: Called as generation advances with the pack's inputs (the same tuple for all
            of a pack's calls), the steps done and the steps in all, over every target.

    Yields:
        For each input, one :class:`Result` per target, or one with the error when the input
        cannot be read. Results come as packs finish, so an input's error may come before the
        results of earlier inputs still waiting in the pack; ``Result.index`` tells whose it is.

    Raises:
        UserError: a target the translator lacks (before any input is read).
    """
    targets = list(dict.fromkeys(targets))
    check_instruments(targets, translator.domains)
    cap = translator.plan(targets[0], 1).batch  # chunks a batch holds
    pack: list[_Pending] = []
    for index, job in enumerate(jobs):
        src, wanted = (Path(job[0]), list(job[1])) if isinstance(job, tuple) else (Path(job),
                                                                                   targets)
        if not wanted:  # every output of it is done
            continue
        try:
            item = _prepare(translator, index, src, wanted, keep_input)
        except UserError as err:
            yield Result(index, src, error=err)
            continue
        # Short inputs share batches, up to a full batch or PACK_STEPS samples.
        if (sum(p.chunks for p in pack) + item.chunks > cap
                or sum(p.steps for p in pack) + item.steps > PACK_STEPS):
            yield from _decode_pack(translator, pack, seed, temperature, progress)
            pack = []
        pack.append(item)
    yield from _decode_pack(translator, pack, seed, temperature, progress)


def _prepare(translator: Translator, index: int, src: Path, targets: list[str],
             keep_input: bool) -> _Pending:
    """Read, check and encode one input (the encoder runs once, whatever the targets)."""
    wav, rate = read_input(src)
    check_audio(wav, str(src))
    latent = translator.encode(wav, SAMPLE_RATE)
    chunks = translator.plan(targets[0], latent.length).chunks
    return _Pending(index, src, targets, latent, rate, wav if keep_input else None,
                    chunks.count, chunks.count * chunks.steps)


def _decode_pack(translator: Translator, pack: list[_Pending], seed: int | None,
                 temperature: float | None,
                 progress: PackProgress | None) -> Iterator[Result]:
    """Decode a pack into each of its targets in turn, yielding each target's results."""
    targets = list(dict.fromkeys(to for p in pack for to in p.targets))
    names = tuple(p.src for p in pack)
    for k, to in enumerate(targets):
        items = [p for p in pack if to in p.targets]

        def report(done: int, total: int, k: int = k) -> None:
            if progress is not None:
                progress(names, k * total + done, total * len(targets))

        outs = translator.decode_many([p.latent for p in items], to, seed=seed,
                                      temperature=temperature, progress=report)
        for p, audio in zip(items, outs, strict=True):
            yield Result(p.index, p.src, to, audio.numpy(), p.rate, p.wav)
