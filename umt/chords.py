"""Notes of any texture: the tracker's line plus the constant-Q peaks that are no partial of it.

``translate.py --pitch chords`` feeds a frame decoder these notes; ``--pitch auto`` takes them
for a file where notes sound together (:func:`is_chordal`) and the tracker's line alone
otherwise. The transcribe-then-render baseline of the evaluation picks its chords with the
same :func:`pick`.

Per 10 ms frame, a semitone bin (C2..B7) is a candidate when it is a local peak across pitch,
within :data:`FLOOR_DB` of the file's loudest bin and not one of the first partials of a louder
candidate below it; a median filter over 7 frames and a minimum length of 80 ms remove flicker.
The notes of a frame are the tracker's key and then, from the lowest up, every candidate that is
neither a neighbour nor one of the first seven partials of a note already kept: a lone line's
strong partials (a cello's fundamental can be weaker than its octave) do not become notes.
"""

from __future__ import annotations

import numpy as np
import torch

from umt.audio import SAMPLE_RATE
from umt.labels import HOP, KEYS, LOWEST
from umt.tracker import MIN_FRAMES as LINE_MIN_FRAMES
from umt.tracker import TRACK_CHUNK, frame_keys, line_notes, onset_frames

FLOOR_DB = -30.0  # constant-Q bins this far under the loudest are not notes
HARMONICS = (12, 19, 24, 28, 31)  # semitones from a fundamental to its 2nd..6th partials
LOW_MIDI, BINS = 36, 72  # C2 and six octaves, one bin per semitone
MIN_FRAMES = 8  # 80 ms: shorter runs are flicker
LINE_DB = 20.0  # the tracker's key needs a constant-Q bin this close to the frame's loudest
RESTRIKE_DB = 6.0  # a held note's bin must rise this much at an onset to be struck again
PARTIALS = (12, 19, 24, 28, 31, 34, 36)  # 2nd..8th partials: no new note in a frame
# A file is chordal when its sounding frames hold this many notes on average. Chosen on 60
# validation clips of the shipped model's build (20 pairs x 3, 4 s): every four-part texture
# held >= 2.58, 38 of 40 lines <= 2.00 (a piano's ringing decays gave two 2.6s).
CHORDAL_NOTES = 2.3


def runs(active: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame index pairs of the True runs of a boolean array (F,)."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def cqt_db(wav: np.ndarray, frames: int | None = None) -> np.ndarray:
    """Constant-Q magnitudes of the semitones C2..B7 in dB under the loudest bin.

    Computed TRACK_CHUNK samples at a time with 1 s of context each side (librosa's transform
    of an hour at once would take GBs).

    Args:
        wav: (T,) audio at 16 kHz.
        frames: Frames wanted (default ``T // 160 + 1``, the transform's own).

    Returns:
        (72, frames) float32, row ``k`` = MIDI note ``36 + k``.
    """
    import librosa

    frames = len(wav) // HOP + 1 if frames is None else frames
    fmin = librosa.note_to_hz("C2")
    out = np.zeros((BINS, frames), np.float32)
    step = TRACK_CHUNK // HOP
    for f0 in range(0, frames, step):
        lead = min(f0 * HOP, SAMPLE_RATE)
        piece = np.asarray(wav[f0 * HOP - lead : (f0 + step) * HOP + SAMPLE_RATE], np.float32)
        C = np.abs(librosa.cqt(piece, sr=SAMPLE_RATE, hop_length=HOP, fmin=fmin, n_bins=BINS,
                               bins_per_octave=12))
        part = C[:, lead // HOP :][:, : min(step, frames - f0)]
        out[:, f0 : f0 + part.shape[1]] = part
    return 20 * np.log10(out / max(float(out.max()), 1e-9) + 1e-9)


def pick(db: np.ndarray) -> np.ndarray:
    """The sounding semitones of a :func:`cqt_db` spectrogram: (72, F) bool, runs >= 80 ms."""
    import scipy.ndimage

    # A note is a local peak across pitch: leakage into neighbouring semitones is not a note.
    peak = np.ones_like(db, dtype=bool)
    peak[1:] &= db[1:] >= db[:-1]
    peak[:-1] &= db[:-1] >= db[1:]
    active = (db > FLOOR_DB) & peak
    for k in range(BINS):
        for h in HARMONICS:
            if k - h >= 0:
                active[k] &= ~(active[k - h] & (db[k - h] > db[k]))
    active = scipy.ndimage.median_filter(active, size=(1, 7))
    for k in range(BINS):
        for s, e in runs(active[k]):
            if e - s < MIN_FRAMES:
                active[k, s:e] = False
    return active


def is_chordal(keys: np.ndarray) -> bool:
    """Whether the sounding frames of a roll hold :data:`CHORDAL_NOTES` notes on average.

    Args:
        keys: (88, F) bool, e.g. from :func:`line_and_chords`.
    """
    count = keys.sum(axis=0)
    return bool((count > 0).any() and count[count > 0].mean() >= CHORDAL_NOTES)


def _near(key: int) -> tuple[int, ...]:
    """The keys a kept note rules out in its frame: itself, its neighbours and its partials."""
    return (key - 1, key, key + 1, *(key + p for p in PARTIALS))


def line_and_chords(line: np.ndarray, db: np.ndarray) -> np.ndarray:
    """The notes of each frame: the tracker's key, then the candidates that add a note.

    The tracker's key counts only where its own constant-Q bin is within :data:`LINE_DB` of the
    frame's loudest (keys under C2 always count): over a chord it can name the chord's virtual
    pitch (C3 under C4-E4-G4), which sounds nowhere.

    Args:
        line: (F,) the tracker's key per frame (0..87, -1 silent; :func:`umt.tracker.frame_keys`).
        db: (72, F) :func:`cqt_db` of the same audio; its :func:`pick` are the candidates.

    Returns:
        (88, F) bool keys.
    """
    F = len(line)
    keys = np.zeros((KEYS, F), bool)
    lo = LOW_MIDI - LOWEST  # row 0 of the constant-Q roll as a key index
    cand = np.zeros((KEYS, F), bool)
    cand[lo : lo + BINS] = pick(db)[: KEYS - lo, :F]
    row = line - lo
    inside = (row >= 0) & (row < BINS)
    level = np.where(inside, db[row.clip(0, BINS - 1), np.arange(F)], 0.0)
    heard = (line >= 0) & (~inside | (level > db[:, :F].max(axis=0) - LINE_DB))
    f = np.flatnonzero(heard)
    keys[line[f], f] = True
    for f in np.flatnonzero(cand.any(axis=0)):  # frames with candidates, in plain Python
        kept = [int(line[f])] if heard[f] else []
        blocked = {n for b in kept for n in _near(b)}
        for k in np.flatnonzero(cand[:, f]).tolist():
            if k not in blocked:
                kept.append(k)
                blocked.update(_near(k))
        keys[kept, f] = True
    for k in np.flatnonzero(keys.any(axis=1)):  # the tracker's jitter rule: no blips
        for a, b in runs(keys[k]):
            if b - a < LINE_MIN_FRAMES:
                keys[k, a:b] = False
    return keys


def roll_notes(keys: np.ndarray, db: np.ndarray, onsets: np.ndarray) -> torch.Tensor:
    """A frame decoder's ``notes`` input from a key roll.

    A note starts where its run starts, or, inside a run, where the signal has an onset and the
    note's constant-Q bin rises by :data:`RESTRIKE_DB` (a repeated note is struck again; a held
    note is not restruck when another voice enters).

    Args:
        keys: (88, F) bool.
        db: (72, F) the :func:`cqt_db` of the same audio.
        onsets: (N,) frames where the signal has an onset (:func:`umt.tracker.onset_frames`).

    Returns:
        (1, 176, F) float: 88 activity then 88 onset flags.
    """
    F = keys.shape[1]
    out = torch.zeros(1, 2 * KEYS, F)
    hit = np.zeros(F, bool)
    hit[onsets[(onsets >= 0) & (onsets < F)]] = True
    padded = np.pad(db[:, :F], ((0, 0), (2, 2)), mode="edge")
    rise = padded[:, 4:] - padded[:, :-4] > RESTRIKE_DB  # (72, F): frame f+2 against f-2
    for key in np.flatnonzero(keys.any(axis=1)):
        row = key + LOWEST - LOW_MIDI  # its constant-Q bin, if in range
        starts = keys[key] & hit & (rise[row] if 0 <= row < BINS else False)
        for s, _ in runs(keys[key]):
            starts[s] = True
        out[0, key] = torch.from_numpy(keys[key].astype(np.float32))
        out[0, KEYS + key] = torch.from_numpy(starts.astype(np.float32))
    return out


def tracked_notes(wav: np.ndarray, frames: int, pitch: str, device: str = "cpu") -> torch.Tensor:
    """A frame decoder's ``notes`` input from the signal alone.

    Args:
        wav: (T,) audio at 16 kHz.
        frames: Frames wanted (``ceil(T / 160)``).
        pitch: ``tracker`` (one line), ``chords`` (:func:`line_and_chords`) or ``auto``
            (chords for a file that :func:`is_chordal`, else the line).
        device: Torch device for the tracker.

    Returns:
        (1, 176, frames) float: 88 activity then 88 onset flags.
    """
    onsets = onset_frames(wav)  # once: the line's repeated notes and the chords' restrikes
    line, starts = frame_keys(wav, frames, device, onsets)
    if pitch == "tracker":
        return line_notes(line, starts)
    db = cqt_db(wav, frames)
    keys = line_and_chords(line, db)
    if pitch == "auto" and not is_chordal(keys):
        return line_notes(line, starts)
    return roll_notes(keys, db, onsets)
