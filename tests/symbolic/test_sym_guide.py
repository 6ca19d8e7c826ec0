"""The chord tagger guiding the transformer: time map, pitch bias, judgement, and harmonize."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import symusic
import torch

from symbolic import metrics as M
from symbolic.api import Composer, UserError
from symbolic.checkpoint import export, load_export
from symbolic.grammar import Grammar
from symbolic.guide import FLOOR, ChordGuide
from symbolic.sample import SampleConfig, generate_many
from symbolic.tagger import TaggerModel
from symbolic.tagger_train import save
from symbolic.tokens import K_BAR, K_DUR, K_PITCH, K_POS, decode, encode

TPQ = 480


def _melody(tokenizer) -> tuple[symusic.Score, list[int]]:
    """One bar of 4/4 then two of 3/4, a quarter note on every beat (10 beats)."""
    score = symusic.Score(TPQ)
    score.time_signatures.extend([symusic.TimeSignature(0, 4, 4),
                                  symusic.TimeSignature(4 * TPQ, 3, 4)])
    track = symusic.Track("melody")
    for i in range(10):
        track.notes.append(symusic.Note(i * TPQ, TPQ, (72, 74, 76, 77, 79)[i % 5], 80))
    score.tracks.append(track)
    ids = encode(tokenizer, score)
    return decode(tokenizer, ids), ids


def _tagger(sets=((0, 4, 7), (2, 7, 11), (0, 5, 9))) -> TaggerModel:
    torch.manual_seed(0)
    return TaggerModel(list(sets), hidden=8, layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def guide(tokenizer, table) -> ChordGuide:
    score, ids = _melody(tokenizer)
    return ChordGuide.build(_tagger(), score, ids, table, weight=2.0)


def _grammar_at(table, bar_tokens: list[int], pos: int | None) -> Grammar:
    """A grammar after the given bars' Bar/TimeSig tokens and a Position ``pos`` in the last."""
    g = Grammar(table)
    g.consume(table.id("ToHarmony_None"))
    for sig in bar_tokens:
        g.consume(table.id("Bar_None"))
        g.consume(sig)
    if pos is not None:
        g.consume(int(table.ids(K_POS)[pos]))
    return g


def test_ticks_follow_the_meters_of_the_bars(guide):
    q = guide.beat  # ticks per quarter of the decoded melody (the tokenizer's resolution)
    assert guide.bar_ticks == [0, 4 * q, 7 * q, 10 * q]
    assert guide.bar_len == [32, 24, 24]  # positions: 8 per quarter
    assert guide.tick(0, 8) == q and guide.tick(1, 0) == 4 * q
    assert guide.tick(2, 20) == 7 * q + 20 * q // 8
    assert guide.tick(3, 0) is None


def test_bias_adds_the_tagger_log_marginal_to_pitches_on_a_beat(guide, table):
    sigs = [t for t in encode_sigs(table)]
    # window starting at source bar 1, its first bar (the 3/4 one), position 8 = beat 5
    g = _grammar_at(table, sigs[1:2], 8)
    bias = guide.bias(g, first_bar=1)
    pitches = table.ids(K_PITCH)
    expected = 2.0 * guide.log_marg[5][table.value[pitches] % 12]
    np.testing.assert_allclose(bias[pitches], expected)
    others = np.ones(table.size, dtype=bool)
    others[pitches] = False
    assert not bias[others].any()
    assert np.isclose(np.exp(guide.log_marg) - FLOOR, guide.probs @ _members(guide)).all()
    assert guide.bias(_grammar_at(table, sigs[1:2], 4), 1) is None  # half a beat: off the beat
    assert guide.bias(_grammar_at(table, sigs[1:2], None), 1) is None  # next: a Position
    assert guide.bias(_grammar_at(table, sigs[2:3], 0), 5) is None  # past the source
    assert dataclasses.replace(guide, weight=0.0).bias(g, 1) is None


def encode_sigs(table) -> list[int]:
    """TimeSig ids of the melody's three bars: 4/4, 3/4, 3/4."""
    return [table.id("TimeSig_4/4"), table.id("TimeSig_3/4"), table.id("TimeSig_3/4")]


def _members(guide) -> np.ndarray:
    m = np.zeros((len(guide.sets), 12))
    for i, s in enumerate(guide.sets):
        m[i, list(s)] = 1
    return m


def _expected(guide, b: int, pcs: frozenset) -> float:
    return sum(guide.probs[b][i] * M.jaccard(pcs, s) for i, s in enumerate(guide.sets))


def test_judge_is_the_expected_jaccard_over_the_taggers_beats(guide):
    q = guide.beat
    # a candidate for bars 1-2 (beats 4-9): C E G on its first beat, silent on its second,
    # G from its third beat on; notes count from the window's own start
    notes = [symusic.Note(0, q, p, 80) for p in (48, 52, 55)] + [symusic.Note(2 * q, 4 * q, 55, 80)]
    scores = [_expected(guide, 4, frozenset({0, 4, 7})), 0.0,
              *[_expected(guide, b, frozenset({7})) for b in (6, 7, 8, 9)]]
    assert guide.judge(notes, 4 * q, 10 * q) == pytest.approx(np.mean(scores))
    assert guide.judge([], 4 * q, 10 * q) == 0.0
    # a window starting half a beat in (odd bars of 3/8) is judged on the tagger's own beats:
    # its note at its tick q/2 sounds on beat 5
    half = [symusic.Note(q // 2, q, 55, 80)]
    assert guide.judge(half, 4 * q + q // 2, 6 * q) == pytest.approx(
        _expected(guide, 5, frozenset({7})))


def test_a_strong_bias_makes_every_pitch_on_a_beat_a_chord_tone(tiny_export, table, tokenizer,
                                                                 guide):
    model = load_export(tiny_export)
    only_c = dataclasses.replace(guide, weight=50.0,
                                 log_marg=np.log(np.eye(12)[[0] * 10] + FLOOR))
    sigs = encode_sigs(table)
    task = table.id("ToHarmony_None")
    grammars = [Grammar(table, max_bars=3, exact=True, timesigs=sigs) for _ in range(2)]
    for g in grammars:
        g.consume(task)
    sample = SampleConfig(pitch_temp=1.5, timing_temp=1.5)
    rows = generate_many(model, table, [task], grammars, [1, 2], sample, 300,
                         bias=lambda g: only_c.bias(g, 0))
    for row in rows:
        notes = M.all_notes(decode(tokenizer, row))
        on_beat = [n.pitch % 12 for n in notes if n.time % guide.beat == 0]
        assert on_beat and set(on_beat) == {0}
        assert sum(table.kind[t] == K_BAR for t in row) == 3


def test_harmonize_without_weights_is_unchanged_by_a_tagger(tiny_export, tokenizer, tmp_path,
                                                            chorale):
    save(_tagger(), tmp_path / "t.pt", {})
    plain = Composer.load(tiny_export, tagger="none")
    tagged = Composer.load(tiny_export, tagger=tmp_path / "t.pt")
    assert plain.tagger is None and tagged.tagger is not None
    src = encode(tokenizer, chorale)[:200]
    sample = SampleConfig(seed=3, candidates=3)
    assert tagged.seq2seq_tokens(src, True, sample) == plain.seq2seq_tokens(src, True, sample)
    guided = dataclasses.replace(sample, chord_guide=5.0, chord_judge=1.0)
    assert tagged.seq2seq_tokens(src, True, guided) != plain.seq2seq_tokens(src, True, sample)
    with pytest.raises(UserError, match="no such symbolic chord tagger"):
        Composer.load(tiny_export, tagger=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="chord_guide must be >= 0"):
        SampleConfig(chord_guide=-1)


def test_guide_reaches_each_window_at_its_own_bars(tiny_export, tokenizer, table, monkeypatch,
                                                   tmp_path):
    """Six bars, 4-bar windows reaching 2 bars back: windows [0, 4) and [2, 6), the second given
    bars 2-3 and writing 4-5. The guide is asked about exactly the bars each window writes."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("melody")
    for i in range(24):
        track.notes.append(symusic.Note(i * TPQ, TPQ, 72 + i % 5, 80))
    score.tracks.append(track)
    ids = encode(tokenizer, score)
    # a budget the barely trained model cannot exhaust in one bar (it would close with empty
    # bars, which are never sampled)
    export(load_export(tiny_export), tmp_path / "m.pt", {"window_bars": 4, "max_tgt_len": 20000})
    composer = Composer.load(tmp_path / "m.pt", tagger="none")
    base = ChordGuide.build(_tagger(), decode(tokenizer, ids), ids, table, weight=1.0)
    asked: dict[int, set[int]] = {}

    class Spy(ChordGuide):
        def bias(self, g, first_bar):
            if g.last in (K_POS, K_DUR):  # a Pitch may come: the bar the row is writing
                asked.setdefault(first_bar, set()).add(first_bar + g.bars - 1)
            return super().bias(g, first_bar)

    monkeypatch.setattr(composer, "_guide", lambda *_: Spy(**vars(base)))
    sample = SampleConfig(seed=2, candidates=1, context_bars=2, chord_guide=1.0)
    out = composer.seq2seq_tokens(ids, True, sample)
    assert sum(table.kind[t] == K_BAR for t in out) == 6
    assert set(asked) == {0, 2}
    assert asked[0] <= {0, 1, 2, 3} and asked[2] <= {4, 5} and asked[0] | asked[2] == set(
        range(6))
