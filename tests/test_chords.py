"""Notes of any texture (umt.chords): the tracker's line plus the constant-Q notes it misses."""

from __future__ import annotations

import numpy as np
import pytest

from umt.chords import (
    BINS,
    LOW_MIDI,
    cqt_db,
    is_chordal,
    line_and_chords,
    pick,
    roll_notes,
    tracked_notes,
)
from umt.labels import KEYS, LOWEST

SR = 16000


def tone(midi: int, seconds: float, partials: tuple[float, ...] = (1.0, 0.5, 0.3)) -> np.ndarray:
    """A harmonic tone: partial amplitudes given, fundamental first."""
    t = np.arange(int(seconds * SR)) / SR
    hz = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(a * np.sin(2 * np.pi * hz * (i + 1) * t) for i, a in enumerate(partials))


def spectrum(notes_by_frame: list[list[int]]) -> np.ndarray:
    """(72, F) constant-Q dB with the given MIDI notes at 0 dB and everything else at -60,
    each frame repeated over 10 frames (the picker's median filter and 80 ms minimum)."""
    out = np.full((BINS, 10 * len(notes_by_frame)), -60.0)
    for f, notes in enumerate(notes_by_frame):
        out[[m - LOW_MIDI for m in notes], 10 * f : 10 * f + 10] = 0.0
    return out


def test_a_lines_partials_and_neighbours_add_no_note_but_a_chord_tone_does():
    a3 = 57 - LOWEST
    line = np.repeat([a3, a3, -1, 48 - LOWEST], 10)
    db = spectrum([[57, 57 + 12, 57 + 19, 58],  # octave, twelfth, leaking neighbour: no notes
                   [57, 57 + 4, 57 + 4 + 12, 57 + 7],  # third (and its octave), fifth: a chord
                   [60, 64],  # the tracker heard nothing: the candidates are the notes
                   [60, 64, 67]])  # the tracker names a virtual C3 that sounds nowhere
    keys = line_and_chords(line, db)
    assert keys.shape == (KEYS, 40)
    assert np.flatnonzero(keys[:, 5]).tolist() == [a3]
    assert np.flatnonzero(keys[:, 15]).tolist() == [a3, a3 + 4, a3 + 7]
    assert np.flatnonzero(keys[:, 25]).tolist() == [60 - LOWEST, 64 - LOWEST]
    assert np.flatnonzero(keys[:, 35]).tolist() == [60 - LOWEST, 64 - LOWEST, 67 - LOWEST]
    assert not is_chordal(keys[:, :10]) and is_chordal(keys[:, 10:])


def test_a_held_note_is_not_restruck_when_another_voice_enters():
    F = 60
    keys = np.zeros((KEYS, F), bool)
    c4, e4 = 60 - LOWEST, 64 - LOWEST
    keys[c4, :] = True  # held throughout ...
    keys[e4, 30:] = True  # ... while E4 enters at frame 30 (an onset in the signal)
    db = np.full((BINS, F), -60.0)
    db[60 - LOW_MIDI] = -6.0
    db[64 - LOW_MIDI, 30:] = -6.0
    db[60 - LOW_MIDI, 45:] = 4.0  # C4 struck again at 45: its own bin jumps by 10 dB
    notes = roll_notes(keys, db, np.array([30, 45]))[0]
    assert notes.shape == (2 * KEYS, F)
    assert np.flatnonzero(notes[KEYS + c4].numpy()).tolist() == [0, 45]
    assert np.flatnonzero(notes[KEYS + e4].numpy()).tolist() == [30]
    assert notes[c4].sum() == F and notes[e4].sum() == F - 30


def test_cqt_in_pieces_equals_one_transform(monkeypatch):
    from umt import chords

    wav = np.concatenate([tone(60, 0.9), tone(67, 0.8)]).astype(np.float32)
    whole = cqt_db(wav)
    monkeypatch.setattr(chords, "TRACK_CHUNK", 32000)  # 0.2 s pieces, each with 1 s context
    pieces = cqt_db(wav)
    assert pieces.shape == whole.shape
    loud = whole > -40
    assert np.abs(pieces - whole)[loud].max() < 1.0  # the same spectrogram, seams included


@pytest.mark.parametrize("pitch", ["chords", "auto"])
def test_a_triad_gives_three_notes_and_a_single_tone_one(pitch):
    # A cello-like tone whose octave is louder than its fundamental: one note, not two.
    single = tone(48, 1.0, (0.5, 1.0, 0.6, 0.4)).astype(np.float32)
    notes = tracked_notes(0.3 * single, 100, pitch)[0].numpy()
    held = np.flatnonzero(notes[:KEYS, 20:80].mean(axis=1) > 0.5)
    assert held.tolist() == [48 - LOWEST]
    triad = sum(tone(m, 1.0) for m in (60, 64, 67)).astype(np.float32)
    notes = tracked_notes(0.2 * triad, 100, pitch)[0].numpy()
    held = np.flatnonzero(notes[:KEYS, 20:80].mean(axis=1) > 0.5)
    assert held.tolist() == [60 - LOWEST, 64 - LOWEST, 67 - LOWEST]
    assert (notes[KEYS:, :15].sum(axis=1) >= 1).sum() == 3  # each struck once, at the start
    assert notes[KEYS:, 20:].sum() == 0


def test_tracker_mode_keeps_one_line_even_for_a_chord():
    triad = sum(tone(m, 1.0) for m in (60, 64, 67)).astype(np.float32)
    notes = tracked_notes(0.2 * triad, 100, "tracker")[0].numpy()
    assert (notes[:KEYS].sum(axis=0) <= 1).all()


def test_pick_keeps_a_chord_and_drops_a_tones_partials():
    triad = sum(tone(m, 1.0) for m in (48, 55, 64)).astype(np.float32)
    rows = np.flatnonzero(pick(cqt_db(triad))[:, 20:80].mean(axis=1) > 0.5)
    assert (rows + LOW_MIDI).tolist() == [48, 55, 64]
