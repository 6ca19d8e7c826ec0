"""Reading and writing MIDI with clear user errors (imports only symusic: bad input fails fast)."""

from __future__ import annotations

from pathlib import Path

import symusic

from plumbing.atomic import atomic_write
from plumbing.errors import UserError  # the one user-error type of both wings

__all__ = ["UserError", "one_track", "read_midi", "select_track", "write_midi"]


def read_midi(path: str | Path) -> symusic.Score:
    """Reads a MIDI file, raising ``UserError`` for a missing, non-MIDI, or note-less file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such file")
    with open(p, "rb") as f:
        if f.read(4) != b"MThd":
            raise UserError(f"{path}: not a MIDI file")
    try:
        score = symusic.Score(str(p))
    except Exception as err:  # symusic raises plain RuntimeErrors on corrupt data
        raise UserError(f"{path}: unreadable MIDI ({err})") from None
    if score.note_num() == 0:
        raise UserError(f"{path}: the MIDI file has no notes")
    return score


def select_track(score: symusic.Score, track: int | None, role: str) -> symusic.Score:
    """One-track score of the notes playing ``role``: track ``track``, or all non-drum tracks."""
    if track is not None:
        if not 0 <= track < len(score.tracks):
            raise UserError(f"track {track} does not exist (the file has {len(score.tracks)})")
        notes = list(score.tracks[track].notes) if not score.tracks[track].is_drum else []
        if not notes:
            raise UserError(f"track {track} has no pitched notes to use as the {role}")
    else:
        notes = [n for t in score.tracks if not t.is_drum for n in t.notes]
        if not notes:
            raise UserError(f"no notes in a non-drum track to use as the {role}")
    return one_track(score, notes)


def write_midi(score: symusic.Score, path: str | Path) -> None:
    """Writes ``score`` atomically (temp name, fsync, rename: never a half-written file)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise UserError(f"output folder does not exist: {path.parent}")
    atomic_write(path, lambda tmp: score.dump_midi(str(tmp)))


def one_track(score: symusic.Score, notes: list) -> symusic.Score:
    """A one-track score holding ``notes`` with the tempo/time signatures of ``score``."""
    out = symusic.Score(score.ticks_per_quarter)
    out.time_signatures = score.time_signatures.copy()
    out.tempos = score.tempos.copy()
    track = symusic.Track("notes")
    track.notes.extend(sorted(notes, key=lambda n: (n.time, n.pitch)))
    out.tracks.append(track)
    return out
