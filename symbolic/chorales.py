"""Converts music21's Bach chorales to MIDI once, into a cache folder.

Each output file has the soprano as track 0 (the melody) and the lower voices after it (the
harmony), which is the layout ``symbolic.data`` expects from any multi-track MIDI.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import symusic

from plumbing.atomic import atomic_write

VOICES = ("soprano", "alto", "tenor", "bass")


def _voice_order(part_names: list[str]) -> list[int] | None:
    """Indices of soprano/alto/tenor/bass parts by name, or None when not a 4-voice chorale."""
    lowered = [(n or "").lower() for n in part_names]
    order = []
    for voice in VOICES:
        hits = [i for i, n in enumerate(lowered) if n.startswith(voice)]
        if not hits:
            return None
        order.append(hits[0])
    return order


def convert_one(name: str, out_path: Path) -> bool:
    """Parses one corpus chorale and writes it as 4-track MIDI. Returns False when skipped."""
    from music21 import converter, corpus, stream

    score = corpus.parse(name)
    order = _voice_order([p.partName for p in score.parts])
    if order is None:
        return False
    parts = stream.Score([score.parts[i] for i in order])
    tmp = out_path.with_suffix(".m21.mid")  # symusic picks the format by suffix
    parts.write("midi", fp=str(tmp))
    midi = symusic.Score(str(tmp))
    os.remove(tmp)
    # music21 writes a conductor track first; keep only tracks that hold notes, in voice order.
    midi.tracks = [t for t in midi.tracks if len(t.notes) > 0]
    if len(midi.tracks) != len(VOICES):
        return False
    for track, voice in zip(midi.tracks, VOICES, strict=True):
        track.name = voice
    del converter
    atomic_write(out_path, lambda tmp: midi.dump_midi(str(tmp)))
    return True


def convert_all(out_dir: Path, limit: int | None = None) -> list[Path]:
    """Converts every chorale not yet in ``out_dir``; returns the MIDI paths present after it."""
    from music21 import corpus

    out_dir.mkdir(parents=True, exist_ok=True)
    done_marker = out_dir / "DONE"
    if not done_marker.exists():
        names = sorted(set(corpus.chorales.Iterator(returnType="filename")))[:limit]
        for name in names:
            path = out_dir / (name.replace("/", "_") + ".mid")
            skip = out_dir / (name.replace("/", "_") + ".skip")
            if path.exists() or skip.exists():
                continue
            try:
                ok = convert_one(name, path)
            except Exception as err:  # music21 fails on a few odd files; skip them
                print(f"skip {name}: {err}", file=sys.stderr)
                ok = False
            if not ok:
                skip.touch()
        if limit is None:
            done_marker.touch()
    partial = (".m21.mid", ".part.mid")
    return sorted(p for p in out_dir.glob("*.mid") if not p.name.endswith(partial))


if __name__ == "__main__":
    paths = convert_all(Path(sys.argv[1] if len(sys.argv) > 1 else "cache/symbolic/chorales"))
    print(f"{len(paths)} chorales")
