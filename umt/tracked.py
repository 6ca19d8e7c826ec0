"""Note labels for folders without them: the pitch tracker's notes of each cached file.

A MusicNet-style folder (``ROOT/<instrument>/*.wav``) has no MIDI, so a model with a note head
(or a decoder that reads notes) learns from the tracker's notes instead (:func:`umt.tracker.
frame_keys`: one line per file, torchcrepe's f0 plus onsets). Each file is tracked once and its
notes kept beside the audio cache, one small file per audio file, so an interrupted labelling
resumes where it stopped and a rebuilt cache (new source hash) is labelled afresh.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from plumbing.atomic import atomic_write
from umt.data import DomainAudio, open_cache
from umt.labels import HOP, Notes

log = logging.getLogger(__name__)


def _notes_path(cache: Path, domain: str, split: str, index: int, digest: str) -> Path:
    return cache / "tracked" / digest[:12] / f"{domain}.{split}.{index}.npz"


def _save_notes(path: Path, notes: Notes) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # through a file: given a name, numpy appends .npz
            np.savez(f, onset=notes.onset, offset=notes.offset, pitch=notes.pitch)

    atomic_write(path, write)


def _load_notes(path: Path) -> Notes:
    with np.load(path) as f:
        return Notes(f["onset"], f["offset"], f["pitch"])


def track_file(audio: DomainAudio, index: int, device: str = "cpu") -> Notes:
    """The tracker's notes of one cached file (times from its first sample)."""
    from umt.tracker import frame_keys, note_list

    length = int(audio.spans[index, 1])
    wav = audio.segment(index, 0, length)
    return note_list(*frame_keys(wav, -(-length // HOP), device))


def tracked_labels(cache: str | Path, split: str, domains: list[str],
                   device: str = "cpu") -> dict[str, list[Notes]]:
    """Notes of every cached file of ``split``, per domain in cache order, tracking the files
    not tracked before.

    Args:
        cache: A folder from :func:`umt.data.build_cache`.
        split: ``train``, ``val`` or ``test`` (falls back to train as :func:`open_cache` does).
        domains: Domains to label.
        device: Torch device for the tracker.

    Returns:
        {domain: [Notes of file 0, file 1, ...]}.
    """
    cache = Path(cache)
    digest = json.loads((cache / "manifest.json").read_text())["source_hash"]
    audio = open_cache(cache, split)
    out: dict[str, list[Notes]] = {}
    for domain in domains:
        out[domain], announced = [], False
        for i in range(len(audio[domain].spans)):
            path = _notes_path(cache, domain, split, i, digest)
            if path.is_file():
                out[domain].append(_load_notes(path))
                continue
            if not announced:  # once per domain, also when a labelling resumes mid-way
                announced = True
                log.info("tracking the notes of %s's %s files (once; kept in %s)", domain, split,
                         path.parent)
            notes = track_file(audio[domain], i, device)
            _save_notes(path, notes)
            out[domain].append(notes)
    return out
