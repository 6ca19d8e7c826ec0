"""MIDI sources: the music21 corpus (converted to MIDI once, cached) and user MIDI folders.

A *work* is one source file (a chorale, a movement, a user MIDI file). It yields *pieces*: the
whole polyphonic texture and each monophonic line (``<work>__soprano``). Splits are made by work,
so no note of a test work is ever heard in training, on any instrument.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data.render import NoteEvent, read_tracks
from umt.errors import UmtError

MIDI_SUFFIXES = (".mid", ".midi")
# Overlaps shorter than this (legato, MIDI rounding) still count as one line.
MONO_TOLERANCE_S = 0.03


@dataclass(frozen=True)
class Work:
    """One source file: ``name`` is unique across sources, ``midi`` its (cached) MIDI file."""

    name: str
    source: str
    origin: str
    midi: Path


@dataclass
class Piece:
    """Notes to render: a whole work (polyphonic) or one of its lines (monophonic)."""

    name: str
    work: str
    voice: str | None
    monophonic: bool
    notes: list[NoteEvent]

    @property
    def duration(self) -> float:
        """Seconds from time 0 to the last note-off."""
        return max((n.end for n in self.notes), default=0.0)


def slug(text: str) -> str:
    """A file-name-safe lowercase name: ``"BWV 1.6"`` -> ``"bwv_1_6"``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def corpus_files(composer: str) -> list[Path]:
    """Files of a music21 corpus composer (``bach``, ``beethoven``, ...), sorted."""
    from music21 import corpus  # slow import, only for corpus sources

    files = sorted(Path(p) for p in corpus.getComposer(composer))
    if not files:
        raise UmtError(f"music21 corpus has no works by {composer!r} (try bach, beethoven, mozart)")
    return files


def convert_corpus_file(path: Path, out_dir: Path, source: str) -> list[Path]:
    """Convert one corpus file to MIDI (one file per score of an opus), cached with a done-list.

    A file music21 cannot parse yields no works (and is remembered, so it is tried once).
    """
    done = out_dir / f"{slug(path.stem)}.done.json"
    if done.is_file():
        return [out_dir / n for n in json.loads(done.read_text())]
    from music21 import converter, stream

    try:
        parsed = converter.parse(str(path))
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    except Exception:  # music21 raises many unrelated types on odd corpus files
        scores = []
    names = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, score in enumerate(scores):
        name = slug(path.stem) + (f"_{i}" if len(scores) > 1 else "")
        target = out_dir / f"{name}.mid"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            score.write("midi", fp=str(tmp))
            os.replace(tmp, target)
            names.append(target.name)
        except Exception:  # an unwritable score is skipped like an unparsable one
            tmp.unlink(missing_ok=True)
    tmp_done = done.with_name(done.name + ".tmp")
    tmp_done.write_text(json.dumps(names))
    os.replace(tmp_done, done)
    return [out_dir / n for n in names]


def iter_works(sources: list[str], cache: Path, order: list[int] | None = None) -> Iterator[Work]:
    """Yield works of ``sources`` (corpus composers or MIDI folders), converting lazily.

    Args:
        sources: Composer names of the music21 corpus, or paths to folders of .mid files.
        cache: Folder for corpus files converted to MIDI.
        order: A permutation of the candidate files to visit them in (seeded shuffling).
    """
    candidates: list[tuple[str, Path, bool]] = []
    for src in sources:
        if os.sep in src or Path(src).is_dir():
            folder = Path(src)
            if not folder.is_dir():
                raise UmtError(f"no such MIDI folder: {folder}")
            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
            if not files:
                raise UmtError(f"no .mid files under {folder}")
            candidates += [(slug(folder.name), p, False) for p in files]
        else:
            candidates += [(slug(src), p, True) for p in corpus_files(src)]
    for i in order if order is not None else range(len(candidates)):
        source, path, from_corpus = candidates[i]
        mids = convert_corpus_file(path, cache / source, source) if from_corpus else [path]
        for mid in mids:
            yield Work(f"{source}-{slug(mid.stem)}", source, str(path), mid)


def count_candidates(sources: list[str]) -> int:
    """Number of candidate files of ``sources`` (for building a permutation)."""
    n = 0
    for src in sources:
        if os.sep in src or Path(src).is_dir():
            n += sum(1 for p in Path(src).rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
        else:
            n += len(corpus_files(src))
    return n


def monophonic_line(notes: list[NoteEvent]) -> list[NoteEvent] | None:
    """The notes as one line (small overlaps trimmed), or None when they hold chords."""
    line: list[NoteEvent] = []
    for n in sorted(notes):
        if line and n.start < line[-1].end - MONO_TOLERANCE_S:
            return None
        if line and n.start < line[-1].end:
            line[-1] = line[-1]._replace(end=n.start)
        line.append(n)
    return line


def pieces_of(work: Work, voices: str = "all", max_seconds: float | None = None) -> list[Piece]:
    """The polyphonic piece of a work and its monophonic lines.

    Args:
        work: The work.
        voices: ``"all"`` for every monophonic track, ``"none"`` for the full texture only, or a
            comma list of track names (``"soprano,bass"``).
        max_seconds: Keep only notes starting before this time (and end them there).
    """
    tracks = read_tracks(work.midi)
    if max_seconds is not None:
        cut = max_seconds
        tracks = [(name, [n._replace(end=min(n.end, cut)) for n in t if n.start < cut])
                  for name, t in tracks]
        tracks = [(name, t) for name, t in tracks if t]
    if not tracks:
        return []
    names = _unique_names([name for name, _ in tracks])
    merged = sorted(n for _, t in tracks for n in t)
    pieces = [Piece(work.name, work.name, None, len(tracks) == 1 and bool(monophonic_line(merged)),
                    merged)]
    wanted = None if voices == "all" else {v.strip() for v in voices.split(",") if v.strip()}
    if voices == "none" or len(tracks) == 1:
        return pieces
    for name, (_, notes) in zip(names, tracks, strict=True):
        line = monophonic_line(notes)
        if line is not None and (wanted is None or name in wanted):
            pieces.append(Piece(f"{work.name}__{name}", work.name, name, True, line))
    return pieces


def _unique_names(raw: list[str]) -> list[str]:
    """Slugged, unique track names (``voice3`` when a track is unnamed)."""
    names: list[str] = []
    for i, name in enumerate(raw):
        name = slug(name) if name.strip() else f"voice{i}"
        names.append(name if name not in names else f"{name}{i}")
    return names
