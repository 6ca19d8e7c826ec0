"""Audio -> notes for the transcribe-then-render baseline: CREPE for one line, a constant-Q
peak picker for chords. Deliberately classic: the pipeline a learned translator must beat."""

from __future__ import annotations

import numpy as np

from data.render import NoteEvent
from evaluation.pitch import HOP, frame_db, track_pitch
from umt.audio import SAMPLE_RATE
from umt.chords import LOW_MIDI, cqt_db, pick, runs
from umt.tracker import hz_to_midi, onset_frames

FRAME_S = HOP / SAMPLE_RATE
MIN_NOTE_S = 0.08


def _velocity(db: float) -> int:
    """MIDI velocity from a level in dB under the clip's loudest frame."""
    return int(np.clip(100 + 1.5 * db, 30, 127))


def _onset_frames(wav: np.ndarray) -> set[int]:
    # librosa's own thresholds, as the baseline has always used (its scores stay comparable).
    return set(onset_frames(wav, delta=0.07, wait=1).tolist())


def transcribe_monophonic(wav: np.ndarray, device: str = "cpu") -> list[NoteEvent]:
    """Notes of a single line: CREPE f0 rounded to semitones, split at pitch changes and onsets.

    Args:
        wav: Audio (T,) at 16 kHz holding one line.
        device: Torch device for CREPE.

    Returns:
        Notes sorted by onset; repeated notes are split where an onset is detected.
    """
    track = track_pitch(wav, device)
    midi = hz_to_midi(track.f0)
    midi[~track.voiced] = -1
    db = frame_db(wav, len(midi))
    onsets = _onset_frames(wav)
    notes: list[NoteEvent] = []
    start = 0
    for i in range(1, len(midi) + 1):
        if i < len(midi) and midi[i] == midi[start] and i not in onsets:
            continue
        if midi[start] >= 0 and (i - start) * FRAME_S >= MIN_NOTE_S:
            level = float(np.max(db[start:i]))
            note = NoteEvent(start * FRAME_S, i * FRAME_S, int(midi[start]), _velocity(level))
            notes.append(note)
        start = i
    return notes


def transcribe_polyphonic(wav: np.ndarray) -> list[NoteEvent]:
    """Notes of any texture: constant-Q semitone bins above a floor that are not partials
    (:func:`umt.chords.pick`, the picker of ``translate.py --pitch chords``), one note per run.

    A bin is dropped when a louder active bin sits one of the first harmonic intervals below it,
    so a single note does not spawn its octave and twelfth. Crude on purpose (see module doc).
    """
    db = cqt_db(wav)
    active = pick(db)
    notes = []
    for k in range(active.shape[0]):
        for s, e in runs(active[k]):
            level = float(db[k, s:e].max())
            notes.append(NoteEvent(float(s * FRAME_S), float(e * FRAME_S), LOW_MIDI + k,
                                   _velocity(level)))
    return sorted(notes)
