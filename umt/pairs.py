"""Paired, labelled batches from a ``data.synth`` build: one clip, two instruments, its notes.

A data.synth build renders the same MIDI on every instrument, time-aligned sample for sample, so
the same samples of two renders are the same notes played twice. :class:`PairedSampler` draws, for
every target instrument ``k``, segments of ``k``'s renders together with the same samples played
by a source instrument (another one with probability ``paired``, else ``k`` itself) and the
notes' frame rolls (:func:`umt.labels.note_frames`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.augment import pitch_shift_segment
from umt.data import SPLITS, DomainAudio, cached_paths, open_cache
from umt.errors import UmtError
from umt.labels import Notes, note_frames, read_notes

NOT_A_BUILD = "labels need a data.synth build (OUT/manifest.json with midi)"


@dataclass
class PairedBatch:
    """One balanced batch, domain-major by target: rows ``k*B .. (k+1)*B - 1`` target domain k.

    Attributes:
        source: (N, T) float32 clean audio of the source instrument (features, loudness).
        source_aug: (N, T) float32 the encoder's input (``source`` pitch-shift augmented).
        target: (N, T) float32 the target instrument's render of the same samples.
        source_domain: (N,) int64 domain index of ``source``.
        target_domain: (N,) int64 domain index of ``target``.
        active: (N, 88, F) float32 key activity per frame (F = ceil(T / 160)).
        onsets: (N, 88, F) float32 onset frames.
        piece: (N,) int64 index into :attr:`PairedSampler.pieces`.
        start: (N,) int64 first sample of the segment in the piece.
    """

    source: torch.Tensor
    source_aug: torch.Tensor
    target: torch.Tensor
    source_domain: torch.Tensor
    target_domain: torch.Tensor
    active: torch.Tensor
    onsets: torch.Tensor
    piece: torch.Tensor
    start: torch.Tensor

    def to(self, device: torch.device | str) -> PairedBatch:
        """The same batch with every tensor on ``device``."""
        return PairedBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def _level_db(seg: np.ndarray) -> float:
    """RMS level in dB of a (T,) segment, as :class:`umt.data.SegmentSampler` measures it."""
    return 20 * float(np.log10(np.sqrt(np.mean(np.square(seg)) + 1e-12)))


class PairedSampler:
    """Draws balanced, paired, labelled batches: ``batch_per_domain`` segments per target domain.

    Args:
        audio: Domain name -> cached audio (see :func:`umt.data.open_cache`).
        domains: Domain order; a segment's domain index is its position here.
        pieces: (P,) piece names.
        notes: (P,) the notes of each piece.
        files: (P, K) int64 file index of each piece in each domain's ``audio``, -1 where absent.
        segment: Samples per segment.
        batch_per_domain: Segments per target domain per batch.
        seed: Seed of the generator (its state rides in checkpoints).
        paired: Probability that a segment's source is another instrument (when the piece has one).
        augment: Whether to pitch-shift a sub-segment of the encoder's copy.
        shift_semitones: Largest augmentation shift.
        silence_db: Segments whose target is quieter than this are redrawn (up to 10 times).

    Raises:
        UmtError: ``paired`` outside [0, 1], or a domain without one piece a segment long.
    """

    def __init__(
        self,
        audio: dict[str, DomainAudio],
        domains: list[str],
        pieces: list[str],
        notes: list[Notes],
        files: np.ndarray,
        segment: int,
        batch_per_domain: int,
        seed: int = 0,
        paired: float = 0.5,
        augment: bool = True,
        shift_semitones: float = 0.5,
        silence_db: float = -50.0,
    ) -> None:
        if not 0.0 <= paired <= 1.0:
            raise UmtError(f"paired must be a probability in [0, 1], got {paired}")
        self.audio, self.domains, self.pieces, self.notes = audio, domains, pieces, notes
        self.files = np.asarray(files, np.int64).reshape(len(pieces), len(domains))
        self.segment, self.batch_per_domain, self.paired = segment, batch_per_domain, paired
        self.augment, self.shift, self.silence_db = augment, shift_semitones, silence_db
        self.lengths = self._common_lengths()
        self.usable = np.maximum(self.lengths - segment + 1, 0)
        self._choices = [self._candidates(k) for k in range(len(domains))]
        self.rng = np.random.default_rng(seed)

    def _common_lengths(self) -> np.ndarray:
        """(P,) samples every render of a piece holds: release tails differ between instruments."""
        lengths = np.full(len(self.pieces), np.iinfo(np.int64).max, np.int64)
        for k, name in enumerate(self.domains):
            have = self.files[:, k] >= 0
            own = self.audio[name].spans[self.files[have, k], 1]
            lengths[have] = np.minimum(lengths[have], own)
        return np.where(self.files.max(axis=1) >= 0, lengths, 0)

    def _candidates(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Pieces target ``k`` can draw from and their probabilities (by usable length)."""
        cand = np.flatnonzero((self.files[:, k] >= 0) & (self.usable > 0))
        if cand.size == 0:
            raise UmtError(f"domain {self.domains[k]}: no piece is one segment "
                           f"({self.segment} samples) long")
        weight = self.usable[cand].astype(np.float64)
        return cand, weight / weight.sum()

    def _segment(self, piece: int, k: int, start: int) -> np.ndarray:
        """(T,) float32 samples of domain ``k``'s render of ``piece`` from ``start``."""
        return self.audio[self.domains[k]].segment(int(self.files[piece, k]), start, self.segment)

    def _draw_target(self, k: int) -> tuple[int, int, np.ndarray]:
        """(piece, start, target segment) for target ``k``; silent targets are redrawn."""
        cand, prob = self._choices[k]
        for _ in range(10):
            piece = int(cand[self.rng.choice(len(cand), p=prob)])
            start = int(self.rng.integers(0, self.usable[piece]))
            target = self._segment(piece, k, start)
            if _level_db(target) >= self.silence_db:
                break
        return piece, start, target

    def _source_domain(self, piece: int, k: int) -> int:
        """Another instrument that rendered ``piece`` with probability ``paired``, else ``k``."""
        others = np.flatnonzero(self.files[piece] >= 0)
        others = others[others != k]
        # Always draw the coin, so the generator advances the same way whatever the piece.
        coin = self.rng.random()
        if others.size and coin < self.paired:
            return int(others[self.rng.integers(others.size)])
        return k

    def next_batch(self) -> PairedBatch:
        """One balanced batch of N = K * batch_per_domain segments (see :class:`PairedBatch`)."""
        cols: dict[str, list] = {f.name: [] for f in fields(PairedBatch)}
        for k in range(len(self.domains)):
            for _ in range(self.batch_per_domain):
                piece, start, target = self._draw_target(k)
                a = self._source_domain(piece, k)
                source = target if a == k else self._segment(piece, a, start)
                aug = pitch_shift_segment(source, self.rng, self.shift) if self.augment else source
                active, onsets = note_frames(self.notes[piece], start, self.segment)
                row = (source, aug, target, a, k, active, onsets, piece, start)
                for name, value in zip(cols, row, strict=True):
                    cols[name].append(value)
        return PairedBatch(**{
            name: torch.from_numpy(np.stack(v)) if isinstance(v[0], np.ndarray)
            else torch.tensor(v, dtype=torch.int64)
            for name, v in cols.items()
        })

    def state_dict(self) -> dict:
        """The generator's state as plain types."""
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`: the next batches repeat exactly."""
        self.rng.bit_generator.state = state

    @classmethod
    def from_build(
        cls,
        root: str | Path,
        cache: str | Path,
        split: str,
        domains: list[str],
        segment: int,
        batch_per_domain: int,
        **options: Any,
    ) -> PairedSampler:
        """A sampler over one split of a data.synth build, reading audio from its cache.

        Args:
            root: The build (``root/manifest.json``, ``root/midi/...``).
            cache: The cache folder :func:`umt.data.build_cache` returned for ``root``.
            split: ``train``, ``val`` or ``test`` (a domain without it falls back to train,
                as in :func:`umt.data.open_cache`).
            domains: Domain order (instrument names of the build, all in the cache).
            segment, batch_per_domain: As for :class:`PairedSampler`.
            **options: The sampler's other settings (``seed``, ``paired``, ``augment``,
                ``shift_semitones``, ``silence_db``), with its defaults.

        Returns:
            The sampler; each piece's MIDI is read once, here.

        Raises:
            UmtError: ``root`` is not a data.synth build, a domain is not cached, a MIDI file
                is missing, or a domain has no piece one segment long.
        """
        root = Path(root).resolve()
        pieces = _build_pieces(root)
        if split not in SPLITS:
            raise UmtError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not (Path(cache) / "manifest.json").is_file():
            raise UmtError(f"no audio cache at {cache} (umt.data.build_cache makes it)")
        names, midis, files = _map_files(root, pieces, cache, split, domains)
        notes = [_read_piece_notes(m) for m in midis]
        audio_map = open_cache(cache, split)
        return cls({d: audio_map[d] for d in domains}, list(domains), names, notes, files,
                   segment, batch_per_domain, **options)


def folder_sampler(cache: str | Path, split: str, domains: list[str], segment: int,
                   batch_per_domain: int, device: str = "cpu", **options: Any) -> PairedSampler:
    """A labelled sampler over a folder without MIDI: every cached file is its own piece,
    played by its own instrument only (no pairs), with the tracker's notes as its labels
    (:func:`umt.tracked.tracked_labels`, tracked once per file).

    Args:
        cache: The folder :func:`umt.data.build_cache` returned.
        split, domains, segment, batch_per_domain, **options: As for
            :meth:`PairedSampler.from_build`.
        device: Torch device for the tracker.
    """
    from umt.tracked import tracked_labels

    labels = tracked_labels(cache, split, domains, device)
    names, notes, rows = [], [], []
    for k, domain in enumerate(domains):
        for i, file_notes in enumerate(labels[domain]):
            names.append(f"{domain}/{i}")
            notes.append(file_notes)
            rows.append([i if j == k else -1 for j in range(len(domains))])
    audio_map = open_cache(cache, split)
    return PairedSampler({d: audio_map[d] for d in domains}, list(domains), names, notes,
                         np.array(rows, np.int64), segment, batch_per_domain, **options)


def is_build(root: str | Path) -> bool:
    """Whether ``root`` is a data.synth build (a manifest whose pieces name their MIDI)."""
    try:
        _build_pieces(Path(root))
    except UmtError:
        return False
    return True


def _build_pieces(root: Path) -> dict[str, dict]:
    """The ``pieces`` table of a data.synth manifest; the one-line error when there is none."""
    path = root / "manifest.json"
    try:
        pieces = json.loads(path.read_text()).get("pieces")
    except (OSError, ValueError, AttributeError):
        pieces = None
    if not isinstance(pieces, dict) or not pieces or not all(
        isinstance(e, dict) and e.get("midi") for e in pieces.values()
    ):
        raise UmtError(f"{NOT_A_BUILD}; {root} is not one")
    return pieces


def _map_files(
    root: Path, pieces: dict[str, dict], cache: str | Path, split: str, domains: list[str]
) -> tuple[list[str], list[Path], np.ndarray]:
    """Pieces of the build found in the cache's split, through the cached files' source paths.

    Returns:
        names: (P,) pieces with a render in the split for at least one domain.
        midis: (P,) their MIDI files.
        files: (P, K) int64 file index of each piece in each domain's cached split, -1 if none.
    """
    paths = cached_paths(cache, split)
    missing = [d for d in domains if d not in paths]
    if missing:
        raise UmtError(f"domain(s) {','.join(missing)} not in the cache {cache}")
    index = [{str(Path(p).resolve()): i for i, p in enumerate(paths[d])} for d in domains]
    names, midis, rows = [], [], []
    for name, entry in pieces.items():
        audio = entry.get("audio", {})
        row = [idx.get(str((root / audio[d]["path"]).resolve()), -1) if d in audio else -1
               for d, idx in zip(domains, index, strict=True)]
        if max(row, default=-1) >= 0:
            names.append(name)
            midis.append(root / entry["midi"])
            rows.append(row)
    files = np.array(rows, np.int64).reshape(len(names), len(domains))
    for k, d in enumerate(domains):
        if not (files[:, k] >= 0).any():
            raise UmtError(f"domain {d}: the cache's {split} files are no renders of {root}")
    return names, midis, files


def _read_piece_notes(midi: Path) -> Notes:
    """A piece's notes; a missing MIDI file says the build is incomplete."""
    if not midi.is_file():
        raise UmtError(f"{midi} is missing: the build is incomplete (rerun python -m data.synth)")
    return read_notes(midi)
