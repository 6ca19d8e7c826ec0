"""Note labels from MIDI: the notes in seconds, and 88-key frame rolls for a segment of audio.

The rolls are framed like the encoder (hop 160 samples = 100 frames/s at 16 kHz): frame ``f`` of
a segment starting at sample ``start`` covers samples ``[start + f*hop, start + (f+1)*hop)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import symusic

from umt.audio import SAMPLE_RATE
from umt.errors import UmtError

HOP = 160
KEYS = 88
LOWEST = 21  # MIDI number of the piano's lowest key (A0); the highest is LOWEST + KEYS - 1 (C8)
DEFAULT_MSPQ = 500_000  # MIDI's tempo until the first tempo event: 120 quarter notes a minute


@dataclass
class Notes:
    """Notes of a piece, sorted by onset.

    Attributes:
        onset: (N,) float64 seconds from the piece's time 0.
        offset: (N,) float64 seconds (note-off).
        pitch: (N,) int64 MIDI numbers, all within ``LOWEST .. LOWEST + KEYS - 1``.
    """

    onset: np.ndarray
    offset: np.ndarray
    pitch: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)


def ticks_to_seconds(ticks: np.ndarray, tempo_ticks: np.ndarray, mspq: np.ndarray,
                     tpq: int) -> np.ndarray:
    """Seconds of MIDI tick positions under a tempo map, in float64.

    Args:
        ticks: (N,) tick positions.
        tempo_ticks: (M,) ticks of the tempo events, ascending (M may be 0).
        mspq: (M,) microseconds per quarter note from each event on.
        tpq: Ticks per quarter note.

    Returns:
        (N,) float64 seconds.
    """
    # 120 bpm holds until the first event; an event at tick 0 replaces it (so does a later one
    # at the same tick: the last event at a tick wins, as a MIDI player applies them in order).
    starts = np.concatenate([[0], np.asarray(tempo_ticks, np.int64)])
    rates = np.concatenate([[DEFAULT_MSPQ], np.asarray(mspq, np.float64)]) / (tpq * 1e6)
    seg_seconds = np.diff(starts) * rates[:-1]
    seg_start_s = np.concatenate([[0.0], np.cumsum(seg_seconds)])
    ticks = np.asarray(ticks, np.int64)
    seg = np.searchsorted(starts, ticks, side="right") - 1
    return seg_start_s[seg] + (ticks - starts[seg]) * rates[seg]


def read_notes(path: str | os.PathLike) -> Notes:
    """The notes of a MIDI file in seconds, tempo changes applied exactly (float64 from ticks).

    Drum tracks are left out, and so are notes outside the piano's 88 keys.

    Args:
        path: A MIDI file.

    Returns:
        The notes (N,) of every non-drum track, merged and sorted by onset then pitch.

    Raises:
        UmtError: the file cannot be read as MIDI.
    """
    try:
        score = symusic.Score(str(path))  # tick time: exact integers, converted here in float64
    except Exception as err:  # symusic raises plain RuntimeError/ValueError variants
        raise UmtError(f"cannot read MIDI {path}: {err}") from None
    tempos = score.tempos.numpy()
    on, off, pitch = [], [], []
    for track in score.tracks:
        if track.is_drum or len(track.notes) == 0:
            continue
        arr = track.notes.numpy()
        on.append(arr["time"].astype(np.int64))
        off.append(arr["time"].astype(np.int64) + arr["duration"].astype(np.int64))
        pitch.append(arr["pitch"].astype(np.int64))
    if not on:
        return Notes(np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    on_t, off_t, pitch = np.concatenate(on), np.concatenate(off), np.concatenate(pitch)
    keep = (pitch >= LOWEST) & (pitch < LOWEST + KEYS)
    order = np.lexsort((pitch[keep], on_t[keep]))
    args = (tempos["time"], tempos["mspq"], score.ticks_per_quarter)
    return Notes(ticks_to_seconds(on_t[keep][order], *args),
                 ticks_to_seconds(off_t[keep][order], *args), pitch[keep][order])


def note_frames(
    notes: Notes, start: int, length: int, hop: int = HOP, sr: int = SAMPLE_RATE
) -> tuple[np.ndarray, np.ndarray]:
    """88-key activity and onset rolls of the segment ``[start, start + length)`` samples.

    A key is active in a frame when one of its notes overlaps the frame (a note always covers at
    least its onset frame, however short); a note's onset is marked in the frame holding its
    onset sample, and not at all when that lies outside the segment.

    Args:
        notes: The piece's notes (times from the audio's sample 0).
        start: First sample of the segment.
        length: Samples in the segment.
        hop: Samples per frame.
        sr: Sample rate of the audio.

    Returns:
        active: (88, F) float32 in {0, 1}, F = ceil(length / hop); row ``i`` is MIDI ``21 + i``.
        onsets: (88, F) float32 in {0, 1}.
    """
    frames = -(-length // hop)
    on = (notes.onset * sr - start) / hop  # in frames from the segment's start
    off = (notes.offset * sr - start) / hop
    first = np.floor(on).astype(np.int64)
    last = np.maximum(np.ceil(off).astype(np.int64) - 1, first)  # a frame ending at off: out
    inside = (last >= 0) & (first < frames)
    key = notes.pitch[inside] - LOWEST
    first, last = first[inside], last[inside]
    # Difference array: +1 where a note's span starts, -1 after it ends; a running sum > 0 is
    # active. One pass over the notes, no per-note slicing.
    diff = np.zeros((KEYS, frames + 1), np.int32)
    np.add.at(diff, (key, np.clip(first, 0, frames)), 1)
    np.add.at(diff, (key, np.clip(last + 1, 0, frames)), -1)
    active = (np.cumsum(diff[:, :frames], axis=1) > 0).astype(np.float32)
    onsets = np.zeros((KEYS, frames), np.float32)
    marked = first >= 0
    onsets[key[marked], first[marked]] = 1.0
    return active, onsets
