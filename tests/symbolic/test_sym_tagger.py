"""The chord tagger: key-relative features, targets, the minimum-Bayes-risk choice, training
on a toy rule, and its file round trip."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from plumbing.errors import UserError
from symbolic import metrics as M
from symbolic import tagger as T
from symbolic import tagger_train as TT

TPQ = 8


def _score(notes: list[tuple[int, int, int]], sig: tuple[int, int] = (4, 4)) -> symusic.Score:
    """A one-track score of (onset in beats, length in beats, pitch)."""
    s = symusic.Score(TPQ)
    s.time_signatures.append(symusic.TimeSignature(0, *sig))
    t = symusic.Track("melody")
    for on, length, pitch in notes:
        t.notes.append(symusic.Note(int(on * TPQ), int(length * TPQ), pitch, 80))
    s.tracks.append(t)
    return s


def _scale(tonic: int) -> list[tuple[int, int, int]]:
    """C major scale up and down (shifted), held tonic at the end: an unambiguous key."""
    steps = [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2, 0]
    return [(i, 1, 60 + tonic + s) for i, s in enumerate(steps)] + [(15, 2, 60 + tonic)]


def test_features_are_key_relative_and_describe_each_beat():
    c, d = T.beat_features(_score(_scale(0))), T.beat_features(_score(_scale(2)))
    assert (c.tonic, c.major) == (0, True) and (d.tonic, d.major) == (2, True)
    assert c.features.shape == (17, T.N_FEATURES)
    # Everything but the pitch height is the same a tone higher.
    same = np.ones(T.N_FEATURES, dtype=bool)
    same[25] = False
    np.testing.assert_array_equal(c.features[:, same], d.features[:, same])
    f = c.features
    assert f[2, 4] == 1 and f[2, :13].sum() == 1  # E on beat 2: pitch class 4, key of C
    assert f[16, 0] == 1 and f[16, 26] == 0  # the held C: sounding, no onset on beat 16
    assert f[0, 27] == 1 and f[2, 28] == 1 and f[1, 29] == 1  # downbeat, middle of 4/4, other
    assert f[0, 32] == 1 and f[-1, 33] == 1


def test_features_mark_rests_and_notes_inside_the_beat():
    f = T.beat_features(_score([(0, 0.5, 64), (0.5, 0.5, 67), (2, 1, 60)])).features
    assert f[0, 13 + 4] == 1 and f[0, 13 + 7] == 1  # E and G both start inside beat 0
    assert f[1, T.REST] == 1  # nothing sounds at beat 1


def test_targets_are_key_relative_sets_and_basses():
    har = [symusic.Note(0, 2 * TPQ, 45, 80), symusic.Note(0, TPQ, 52, 80)]  # A2 + E3, A2 alone
    sets, basses = T.beat_targets(har, 3, TPQ, tonic=9)
    assert sets == [frozenset({0, 7}), frozenset({0}), frozenset()]
    assert basses == [0, 0, -1]


def _model_with_logits(sets, logits: list[list[float]]) -> T.TaggerModel:
    """A tagger whose set head outputs fixed logits per beat (weights zeroed, bias set)."""
    model = T.TaggerModel(sets, hidden=4, layers=1, dropout=0.0)
    with torch.no_grad():
        model.set_head.weight.zero_()
        model.set_head.bias.copy_(torch.tensor(logits[0]))
    return model


def test_minimum_bayes_risk_set_beats_the_most_probable_one():
    # P({0,4,7}) 0.25, P({0,4}) 0.45, P({0,7}) 0.3: expected Jaccard of {0,4,7} is
    # 0.25 + 0.75 * 2/3 = 0.75, of {0,4} 0.25 * 2/3 + 0.45 + 0.3 / 3 = 0.717: the MBR choice is
    # {0,4,7} though {0,4} is the most probable set.
    sets = [(0, 4, 7), (0, 4), (0, 7)]
    model = _model_with_logits(sets, [np.log([0.25, 0.45, 0.3]).tolist()])
    beats = T.beat_features(_score([(0, 1, 64)]))
    probs, marg = model.posterior(beats)
    np.testing.assert_allclose(probs[0], [0.25, 0.45, 0.3], atol=1e-6)
    tonic = beats.tonic
    assert marg[0, tonic % 12] == pytest.approx(1.0)
    assert marg[0, (tonic + 4) % 12] == pytest.approx(0.7)
    assert marg[0, (tonic + 1) % 12] == pytest.approx(0.0)
    best, _ = model.best_sets(beats)
    assert best == [frozenset({tonic % 12, (tonic + 4) % 12, (tonic + 7) % 12})]


def test_vocabulary_keeps_sets_seen_twice():
    sets = [frozenset({0, 4, 7})] * 3 + [frozenset({2})] + [frozenset()] * 5 + [frozenset({0})] * 2
    assert T.set_vocabulary(sets) == [(0, 4, 7), (0,)]


def _toy_examples(n: int, seed: int) -> list[TT.Example]:
    """Melodies of random scale degrees whose 'harmony' is the triad on the melody's degree."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        degrees = rng.choice([0, 5, 7], size=12)
        beats = T.beat_features(_score([(i, 1, 60 + int(d)) for i, d in enumerate(degrees)]))
        sets = [frozenset({int(d) % 12, (int(d) + 4) % 12, (int(d) + 7) % 12})
                for d in (degrees - beats.tonic)]
        out.append(TT.Example(beats.features, sets, [int(d - beats.tonic) % 12
                                                     for d in degrees]))
    return out


def test_training_learns_a_toy_rule_and_round_trips(tmp_path):
    train, val = _toy_examples(24, 0), _toy_examples(6, 1)
    model = TT.fit(train, val, epochs=25, batch=8, lr=1e-2, hidden=32, log=False)
    assert TT.expected_score(model, val) > 0.95
    TT.save(model, tmp_path / "t.pt", {"note": "toy"})
    back = T.load(tmp_path / "t.pt")
    x = torch.from_numpy(val[0].features)[None]
    torch.testing.assert_close(back(x)[0], model(x)[0], atol=2e-2, rtol=1e-2)  # fp16 file
    assert back.sets == model.sets


def test_load_refuses_other_files(tmp_path):
    with pytest.raises(UserError, match="no such symbolic chord tagger"):
        T.load(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="is not a symbolic chord tagger"):
        T.load(tmp_path / "other.pt")
    with pytest.raises(UserError, match="pieces with a melody and lower voices"):
        TT.fit([], [])


def test_voicing_of_a_set_sits_between_bass_and_melody():
    pitches = T.voice_set((frozenset({0, 4, 7}), 0), 72)  # C major under C5
    assert pitches[0] == 48 and all(48 < p < 72 for p in pitches[1:])
    assert {p % 12 for p in pitches} == {0, 4, 7}
    assert T.voice_set((frozenset({7}), 7), 67)[1:] == [55]  # a lone pitch class: doubled


def test_harmoniser_voices_every_beat_in_the_melodys_key():
    # a tagger that always names the tonic triad, key-relative {0, 4, 7}, bass on the tonic
    model = _model_with_logits([(0, 4, 7), (2, 7, 11)], [[5.0, -5.0]])
    with torch.no_grad():
        model.bass_head.weight.zero_()
        model.bass_head.bias.copy_(torch.tensor([5.0] + [-5.0] * 11))
    mel = _score(_scale(2))  # D major, 17 beats
    notes = T.harmoniser(model)(0, None, mel)
    for b in range(17):
        now = M.sounding(notes, b * TPQ)
        top = max(n.pitch for n in M.sounding(M.all_notes(mel), b * TPQ))
        assert {n.pitch % 12 for n in now} == {2, 6, 9}  # D F# A: rolled back to the key
        assert min(now, key=lambda n: n.pitch).pitch % 12 == 2 and all(n.pitch < top
                                                                       for n in now)
