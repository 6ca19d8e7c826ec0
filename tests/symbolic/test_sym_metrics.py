"""Key finding, in-key rate and chord consonance on hand-made notes."""

import pytest
import symusic

from symbolic import metrics as M


def _notes(pitches: list[int], dur: int = 480) -> list:
    return [symusic.Note(i * dur, dur, p, 80) for i, p in enumerate(pitches)]


@pytest.mark.parametrize("shift", [0, 5, 11])
def test_key_finder_names_major_and_minor_scales_in_every_transposition(shift):
    c_major = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60]
    a_minor = [57, 59, 60, 62, 64, 65, 68, 69, 64, 60, 57]  # harmonic: G sharp
    assert M.find_key(_notes([p + shift for p in c_major])) == (shift % 12, True)
    assert M.find_key(_notes([p + shift for p in a_minor])) == ((9 + shift) % 12, False)
    assert M.find_key([]) is None
    assert M.find_key(_notes(list(range(60, 72)))) == (0, True)  # all twelve equal: a tie


def test_key_finder_weights_by_duration():
    # the same white notes; holding C-E-G long says C major, holding A-C-E long says A minor
    pitches = [60, 64, 67, 69, 62, 65, 71, 57]
    long_c = [symusic.Note(i * 480, 1920 if p in (60, 64, 67) else 240, p, 80)
              for i, p in enumerate(pitches)]
    long_a = [symusic.Note(i * 480, 1920 if p in (57, 69, 60, 64) else 240, p, 80)
              for i, p in enumerate(pitches)]
    assert M.find_key(long_c) == (0, True)
    assert M.find_key(long_a) == (9, False)


def test_a_minor_key_holds_its_leading_note():
    a_minor = M.key_pitch_classes((9, False))
    assert {57 % 12, 68 % 12, 69 % 12} <= a_minor  # G sharp belongs to A minor
    assert 63 % 12 not in a_minor  # D sharp does not
    assert 61 % 12 not in M.key_pitch_classes((0, True))
    assert len(a_minor) == 8 and len(M.key_pitch_classes((0, True))) == 7


@pytest.mark.parametrize("pcs, ok", [
    ({0, 4, 7}, True), ({9, 0, 4}, True), ({11, 2, 5}, True), ({7, 11, 2, 5}, True),
    ({7, 11, 5}, True), ({0, 4}, True), ({0, 3, 8}, True),
    ({0, 2, 4}, False), ({0, 4, 7, 11}, False), ({0}, False), ({0, 1}, False),
    ({2, 5, 9, 0}, False), (set(), False)])
def test_consonance_is_one_triad_or_dominant_seventh(pcs, ok):
    assert M.is_consonant(frozenset(pcs)) is ok


def test_bar_lines_follow_meter_changes_and_top_leaps_compare_the_beat_before():
    score = symusic.Score(480)
    score.time_signatures.extend([symusic.TimeSignature(0, 4, 4),
                                  symusic.TimeSignature(1920, 3, 4)])
    assert M.bar_lines(score, 1920 + 3 * 1440) == [0, 1920, 3360, 4800]
    assert M.bar_lines(symusic.Score(480), 3840) == [0, 1920]  # no signature: 4/4
    n = symusic.Note
    notes = [n(1440, 480, 60, 80), n(1920, 480, 72, 80),  # a leap of an octave at 1920
             n(2880, 480, 67, 80), n(2880, 480, 50, 80), n(3360, 480, 65, 80),  # top 67 -> 65
             n(4800, 480, 60, 80)]  # nothing sounds on the beat before 4800: skipped
    assert M.top_leaps(notes, [0, 1920, 3360, 4800], 480) == [True, False]
    assert M.top_leaps(notes, [1920], 480, interval=12) == [False]  # more than, not equal
