"""What the corpus build reads: the music21 corpus's collections as :class:`Item` s, each parsed
to a symusic score (with music21's known slips worked around) and tokenised as
:mod:`symbolic.data` tokenises a piece. :mod:`symbolic.corpus` runs this in parallel under a time
limit and keeps the records.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from plumbing.errors import UserError

FORMATS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")  # preference order for one file stem
NOT_MUSIC = {"demos", "theoryExercises", "_metadataCache"}  # test files, not repertoire
SPLITS = ("train", "val", "test")


# Collections: top-level corpus folders. The first six are several voices (harmony), the rest
# tunes and lead sheets (melody and continuation); "other" takes every folder no other claims.
COLLECTIONS: dict[str, tuple[str, ...]] = {
    "bach": ("bach",), "palestrina": ("palestrina",), "josquin": ("josquin",),
    "monteverdi": ("monteverdi",), "trecento": ("trecento", "ciconia", "luca"), "other": (),
    "essen": ("essenFolksong",), "ryans": ("ryansMammoth",), "oneills": ("oneills1850",),
    "folk": ("airdsAirs", "miscFolk", "nottingham-dataset"), "leadsheet": ("leadSheet",),
}
MERGE_VOICES = {"josquin"}  # its ABC files hold one voice per tune, not a book of tunes


@dataclass(frozen=True)
class Item:
    """One score to parse: a corpus file, or tune ``number`` of an ABC file."""

    collection: str
    path: str  # relative to the music21 corpus root, e.g. "bach/bwv66.6.mxl"
    number: int | None = None

    @property
    def key(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"


Loader = Callable[[Item], tuple[Any, dict]]  # item -> (symusic.Score, metadata)


def corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def _files(root: Path, dirs: list[str]) -> list[str]:
    """Score files under ``dirs``, one per stem (a movement shipped as .krn and .mxl once)."""
    best: dict[Path, Path] = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            if p.suffix in FORMATS:
                stem = p.with_suffix("")
                if stem not in best or FORMATS.index(p.suffix) < FORMATS.index(best[stem].suffix):
                    best[stem] = p
    return sorted(str(p.relative_to(root)) for p in best.values())


def _abc_numbers(path: Path) -> list[int]:
    """Reference numbers (``X:``) of the tunes in an ABC file."""
    text = path.read_text(encoding="latin-1")  # old ABC books are not all valid utf-8
    return sorted({int(n) for n in re.findall(r"^X:\s*(\d+)", text, re.M)})


def list_items(names: list[str] | None = None, limit: int = 0) -> list[Item]:
    """Items of the chosen collections (default: all), in a fixed order.

    Args:
        names: collection names (keys of ``COLLECTIONS``).
        limit: keep only the first N items, taken in turn from each collection so that a small
            build samples every collection; 0 = all.

    Raises:
        UserError: an unknown collection name.
    """
    names = names or list(COLLECTIONS)
    unknown = sorted(set(names) - set(COLLECTIONS))
    if unknown:
        raise UserError(f"unknown collection(s) {', '.join(unknown)}: use {', '.join(COLLECTIONS)}")
    root = corpus_root()
    claimed = {d for dirs in COLLECTIONS.values() for d in dirs} | NOT_MUSIC
    rest = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in claimed)
    per: list[list[Item]] = []
    for name in names:
        items = []
        for rel in _files(root, list(COLLECTIONS[name]) or rest):
            book = rel.endswith(".abc") and name not in MERGE_VOICES
            nums = _abc_numbers(root / rel) if book else []
            items += [Item(name, rel, n) for n in nums] if nums else [Item(name, rel)]
        per.append(items)
    ordered = [it for row in itertools.zip_longest(*per) for it in row if it is not None]
    return ordered[:limit] if limit else [it for items in per for it in items]


# ---- one item: music21 -> MIDI -> tokens (runs in the worker processes) ----
def _chord_part(part: Any) -> Any:
    """A copy of a melody part holding only its chord symbols, each sounding until the next:
    measures and repeats stay the melody's, so the MIDI export lines both up."""
    import copy

    from music21 import harmony

    chords = copy.deepcopy(part)
    for n in list(chords.recurse().notes):
        if not isinstance(n, harmony.ChordSymbol) or not n.pitches:
            n.activeSite.remove(n)
    harmony.realizeChordSymbolDurations(chords)
    for c in chords.recurse().getElementsByClass(harmony.ChordSymbol):
        c.writeAsChord = True
    return chords


def _music21_parts(score: Any) -> list:
    """Parts in melody-first order, chord symbols realised (one-part tunes) or dropped."""
    from music21 import harmony

    from symbolic.chorales import _voice_order

    parts = list(score.parts) or [score]
    order = _voice_order([p.partName for p in parts])
    if order is not None:  # a chorale: its four voices only, as symbolic.chorales converts them
        parts = [parts[i] for i in order]
    chords = []
    if len(parts) == 1 and parts[0].recurse().getElementsByClass(harmony.ChordSymbol).first():
        chords = [_chord_part(parts[0])]  # a tune with chord symbols: they are its harmony
    for part in parts:  # else music21 writes them into the track of the part holding them
        for c in list(part.recurse().getElementsByClass(harmony.ChordSymbol)):
            c.activeSite.remove(c)
    return parts + chords


def _midi_bytes(parts: list) -> bytes:
    """MIDI of the parts; repeats are played out, or ignored where music21 finds them broken."""
    import copy

    from music21 import bar, midi, repeat, spanner, stream
    from music21.exceptions21 import StreamException

    score = stream.Score(parts)
    seen: set[int] = set()
    for m in score.recurse().getElementsByClass(stream.Measure):
        for e in list(m):  # music21's ABC re-barring can put one meter object in two measures
            if id(e) in seen:
                m.replace(e, copy.deepcopy(e))
            seen.add(id(e))
    try:
        return midi.translate.streamToMidiFile(score).writestr()
    except (repeat.ExpanderException, StreamException):  # music21 fails on odd repeats
        for m in score.recurse().getElementsByClass(stream.Measure):
            for side in ("leftBarline", "rightBarline"):
                if isinstance(getattr(m, side), bar.Repeat):
                    setattr(m, side, None)
        for cls in (repeat.RepeatExpression, spanner.RepeatBracket):
            for r in list(score.recurse().getElementsByClass(cls)):
                r.activeSite.remove(r)
        return midi.translate.streamToMidiFile(score).writestr()


def load_music21(item: Item) -> tuple[Any, dict]:
    """Parses one corpus item with music21 into a multi-track ``symusic.Score`` and metadata."""
    import symusic
    from music21 import converter, stream

    # No pickle cache: every item is parsed once, and music21's pickles would fill its temp dir.
    obj = converter.parse(corpus_root() / item.path, number=item.number, forceSource=True,
                          storePickle=False)
    if isinstance(obj, stream.Opus):
        obj = obj.mergeScores() if item.collection in MERGE_VOICES else obj.scores[0]
    md = obj.metadata
    meta = {"title": md.title if md else None, "parent_title": md.parentTitle if md else None}
    score = symusic.Score.from_midi(_midi_bytes(_music21_parts(obj)))
    score.tracks = [t for t in score.tracks if len(t.notes) > 0]  # drops the conductor track
    return score, meta


@cache
def shared_tokenizer() -> Any:
    """The one tokeniser, built once per process (workers of a build reuse it)."""
    from symbolic.tokens import build_tokenizer

    return build_tokenizer()


@cache
def vocab_hash() -> str:
    """Fingerprint of the tokeniser's vocabulary: records made with another one are rebuilt."""
    vocab = sorted(shared_tokenizer().vocab.items())
    return hashlib.md5(json.dumps(vocab).encode()).hexdigest()[:12]


def tokenize(score: Any) -> dict[str, list[int]] | None:
    """Full, melody and harmony token ids of a score (None without notes), as in data.py."""
    from symbolic.tokens import encode, split_voices

    if score.note_num() == 0:
        return None
    melody, harmony = split_voices(score)
    tok = shared_tokenizer()
    return {"full": encode(tok, score), "melody": encode(tok, melody),
            "harmony": encode(tok, harmony)}
