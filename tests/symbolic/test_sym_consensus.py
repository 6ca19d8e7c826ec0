"""Several sampled windows, one kept: batched sampling equals one-by-one, the consensus choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import symusic
import torch

from symbolic.align import SourceNotes
from symbolic.api import Composer, UserError, window_start
from symbolic.checkpoint import export, load_export
from symbolic.config import ModelConfig
from symbolic.consensus import choose, consensus_scores
from symbolic.grammar import Grammar, check_sequence
from symbolic.model import MusicTransformer
from symbolic.sample import SampleConfig, generate, generate_many
from symbolic.tokens import K_BAR, encode, position_ids
from symbolic.train import build_model

C, E, G, D, F, B = 0, 4, 7, 2, 5, 11
CEG, GBD, DFB = frozenset({C, E, G}), frozenset({G, B, D}), frozenset({D, F, B})


@pytest.fixture(scope="module")
def aligned() -> MusicTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=2, d_ff=64, dropout=0.0,
                      seg_len=16, mem_len=32, max_rel=32, attention="txl", align=True)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.align_proj.weight, std=0.5)  # the source steers the samples
    return model


def _grammars(table, first: int, n: int, bars: int, exact: bool) -> list[Grammar]:
    out = [Grammar(table, max_bars=bars, exact=exact) for _ in range(n)]
    for g in out:
        g.consume(first)
    return out


@pytest.mark.parametrize("bars", [False, True])
def test_batched_rows_equal_one_by_one_sampling_with_their_seeds(bars, tiny_export, table):
    """Rows that end at different times (EOS allowed early) still match their single runs;
    with bar attention (the shipped kind) rows also cross bar lines at different steps."""
    model = load_export(tiny_export)
    if bars:
        torch.manual_seed(1)
        model = build_model(dataclasses.replace(model.cfg, attention="txl", bar_attention=True,
                                                mem_len=24, seg_len=8)).eval()
    bos, seeds = table.id("BOS_None"), [3, 11, 5, 8]
    cfg = SampleConfig(pitch_temp=2.0, timing_temp=2.0)
    many = generate_many(model, table, [bos], _grammars(table, bos, 4, 3, False), seeds, cfg, 90)
    one = [generate(model, table, [bos], _grammars(table, bos, 1, 3, False)[0],
                    dataclasses.replace(cfg, seed=s), 90) for s in seeds]
    assert many == one
    assert len({len(r) for r in many}) > 1  # some rows stopped while others went on
    for row in many:
        check_sequence([bos, *row], table)
    with pytest.raises(ValueError, match="one seed per grammar"):
        generate_many(model, table, [bos], _grammars(table, bos, 2, 3, False), [1], cfg, 9)


def test_batched_aligned_seq2seq_rows_equal_one_by_one(aligned, table, tokenizer, chorale):
    src = encode(tokenizer, chorale)[:60]
    x = torch.tensor([src])
    enc = aligned.encode(x, *position_ids(x, table, aligned.cfg.n_pos))
    task, seeds, cfg = table.id("ToHarmony_None"), [1, 2, 7], SampleConfig(pitch_temp=1.5)
    many = generate_many(aligned, table, [task], _grammars(table, task, 3, 2, True), seeds, cfg,
                         80, enc=enc, source=SourceNotes(src, table))
    one = [generate(aligned, table, [task], _grammars(table, task, 1, 2, True)[0],
                    dataclasses.replace(cfg, seed=s), 80, enc=enc, source=SourceNotes(src, table))
           for s in seeds]
    assert many == one and len(set(map(tuple, many))) == 3
    assert all(sum(table.kind[t] == K_BAR for t in r) == 2 for r in many)


def test_consensus_keeps_the_candidate_the_others_agree_with():
    source = [frozenset({E}), frozenset({D})]
    odd = [frozenset({F}), frozenset({C})]
    cands = [odd, [CEG, GBD], [CEG, frozenset({G, B})], [frozenset({C, G}), GBD]]
    scores = consensus_scores(cands, source, 0.0)
    assert choose(cands, source, 0.0) == 1 and scores[0] == scores.min()
    # 1 agrees with 2 on (1, 2/3), with 3 on (2/3, 1), with 0 on nothing
    np.testing.assert_allclose(scores[1], (5 / 6 + 5 / 6 + 0) / 3)


def test_consonance_weight_prefers_the_candidate_that_makes_one_chord_with_the_source():
    source = [frozenset({C}), frozenset(), frozenset({B})]  # nothing sounds on the second beat
    clash = [frozenset({D, F}), frozenset({D}), frozenset({C, E})]  # C+D+F, then B+C+E
    chord = [frozenset({E, G}), frozenset({D}), DFB]  # C-E-G, then B-D-F
    assert choose([clash, chord], source, 0.0) == 0  # a tie on agreement: the first
    assert choose([clash, chord], source, 0.1) == 1
    # agreement 1/3 each (the second beat), consonance 0 and 1
    np.testing.assert_allclose(consensus_scores([clash, chord], source, 1.0), [1 / 3, 4 / 3])
    assert choose([clash], source, 1.0) == 0
    with pytest.raises(ValueError, match="one set per source beat"):
        consensus_scores([clash, chord[:2]], source, 1.0)
    with pytest.raises(ValueError, match="candidates must be >= 1"):
        SampleConfig(candidates=0)
    with pytest.raises(ValueError, match="consonance must be >= 0"):
        SampleConfig(consonance=-0.5)


def test_agreement_is_judged_where_the_reference_sounds():
    """A candidate that drops a voice loses against one that sounds (silent beats skipped)."""
    full, gap, source = [CEG, GBD], [CEG, frozenset()], [frozenset({E}), frozenset({D})]
    # gap against full: beats 0 and 1 (1 and 0); full against gap: beat 0 only (1)
    np.testing.assert_allclose(consensus_scores([gap, full], source, 0.0), [0.5, 1.0])
    silent = [frozenset(), frozenset()]
    np.testing.assert_allclose(consensus_scores([silent, silent], source, 0.0), [0.0, 0.0])


def _windows(composer, tokenizer, chorale, bars: int) -> tuple[list[int], list[list[int]]]:
    """The chorale's first ``bars`` bars and its windows of ``composer.window_bars`` bars."""
    src = np.asarray(encode(tokenizer, chorale))
    starts = np.nonzero(composer.table.kind[src] == K_BAR)[0]
    step = composer.window_bars
    wins = [src[starts[a]: starts[a + step]].tolist() for a in range(0, bars, step)]
    assert all(len(w) <= composer.max_src for w in wins)  # no window is cut
    return src[: starts[bars]].tolist(), wins


def _sample_window(composer, window: list[int], sample: SampleConfig, seed: int,
                   given: tuple[int, ...] = ()) -> list[int]:
    """One harmony of ``window``, its decoder starting with the ids ``given`` (forced)."""
    table, model = composer.table, composer.model
    x = torch.tensor([window])
    enc = model.encode(x, *position_ids(x, table, model.cfg.n_pos))
    task = table.id("ToHarmony_None")
    sigs = [window[i + 1] for i in np.nonzero(table.kind[np.asarray(window)] == K_BAR)[0]]
    g = Grammar(table, max_bars=len(sigs), exact=True, timesigs=sigs)
    for tok in (task, *given):
        g.consume(tok)
    return generate(model, table, [task, *given], g, dataclasses.replace(sample, seed=seed),
                    composer.max_tgt - len(given), enc=enc, source=SourceNotes(window, table))


def _sample_rows(composer, window: list[int], sample: SampleConfig, seeds: list[int],
                 given: tuple[int, ...]) -> list[list[int]]:
    """Harmonies of ``window`` in one batch (as ``harmonize`` samples: long rows may round
    differently one by one), the decoder starting with the ids ``given``."""
    table, model = composer.table, composer.model
    x = torch.tensor([window])
    enc = model.encode(x, *position_ids(x, table, model.cfg.n_pos))
    task = table.id("ToHarmony_None")
    sigs = [window[i + 1] for i in np.nonzero(table.kind[np.asarray(window)] == K_BAR)[0]]
    grammars = [Grammar(table, max_bars=len(sigs), exact=True, timesigs=sigs) for _ in seeds]
    for g in grammars:
        for tok in (task, *given):
            g.consume(tok)
    return generate_many(model, table, [task, *given], grammars, seeds, sample,
                         composer.max_tgt - len(given), enc=enc,
                         source=SourceNotes(window, table))


def _bars(ids: list[int], table) -> list[list[int]]:
    cuts = [*np.nonzero(table.kind[np.asarray(ids)] == K_BAR)[0].tolist(), len(ids)]
    return [ids[i:j] for i, j in zip(cuts[:-1], cuts[1:], strict=True)]


@pytest.mark.parametrize("k", [1, 3])
def test_harmonize_keeps_the_consensus_of_each_windows_candidates(k, aligned, tmp_path,
                                                                   tokenizer, chorale):
    export(aligned, tmp_path / "a.pt", {"window_bars": 2})
    composer = Composer.load(tmp_path / "a.pt")
    src, wins = _windows(composer, tokenizer, chorale, 4)
    sample = SampleConfig(pitch_temp=1.5, seed=4, candidates=k, consonance=0.5, context_bars=0)
    expected = []
    for w, window in enumerate(wins):
        # one candidate: seed + window, as before candidates existed
        runs = [_sample_window(composer, window, sample, (4 + w) * k + j) for j in range(k)]
        assert len(set(map(tuple, runs))) == k
        expected += runs[composer._consensus(window, runs, 0.5)]
    assert composer.seq2seq_tokens(src, True, sample) == expected


def _two_meters(tokenizer) -> list[int]:
    """Seven bars of quarter notes on a scale: four in 4/4, then three in 3/4."""
    score = symusic.Score(480)
    score.time_signatures.extend([symusic.TimeSignature(0, 4, 4),
                                  symusic.TimeSignature(4 * 1920, 3, 4)])
    track = symusic.Track("melody")
    for i in range(25):
        track.notes.append(symusic.Note(i * 480, 480, (60, 62, 64, 65, 67, 69, 71)[i % 7], 80))
    score.tracks.append(track)
    return encode(tokenizer, score)


@pytest.mark.parametrize("k", [1, 3])
def test_each_window_continues_the_bars_already_written(k, aligned, tmp_path, tokenizer):
    """Context 2 of a 4-bar window over 7 bars (4/4, then 3/4): windows [0, 4), [2, 6), [4, 7);
    each later one is given its first two output bars (forced, then the next Bar and TimeSig)
    and writes only the bars after them, judged on those bars alone."""
    # a budget the context never crowds, so every window reaches back 2 (window_start: below)
    export(aligned, tmp_path / "a.pt", {"window_bars": 4, "max_tgt_len": 20000})
    composer = Composer.load(tmp_path / "a.pt")
    table = composer.table
    src = _two_meters(tokenizer)
    src_bars = _bars(src, table)
    assert len(src_bars) == 7 and len({bar[1] for bar in src_bars}) == 2  # two meters
    sample = SampleConfig(pitch_temp=1.5, seed=4, candidates=k, consonance=0.5)  # auto: 2 bars
    out: list[list[int]] = []
    for w, (first, a, end) in enumerate([(0, 0, 4), (2, 4, 6), (4, 6, 7)]):
        window = [t for bar in src_bars[first:end] for t in bar]
        head = (table.id("Bar_None"), src_bars[a][1]) if a > first else ()
        given = (*[t for bar in out[first:a] for t in bar], *head)
        assert len(given) <= composer.max_tgt // 2
        seeds = [(4 + w) * k + j for j in range(k)]
        runs = [list(head) + r for r in _sample_rows(composer, window, sample, seeds, given)]
        new_src = [t for bar in src_bars[a:end] for t in bar]
        out += _bars(runs[composer._consensus(new_src, runs, 0.5)], table)
        assert len(out) == end
    got = composer.seq2seq_tokens(src, True, sample)
    assert got == [t for bar in out for t in bar]
    assert [bar[1] for bar in _bars(got, table)] == [bar[1] for bar in src_bars]  # the meters
    assert got != composer.seq2seq_tokens(src, True, dataclasses.replace(sample, context_bars=0))
    with pytest.raises(UserError, match="below the model's window of 4 bars"):
        composer.seq2seq_tokens(src, True, dataclasses.replace(sample, context_bars=4))
    with pytest.raises(ValueError, match="context_bars must be >= 0"):
        SampleConfig(context_bars=-1)


def test_window_start_reaches_back_less_where_the_context_would_crowd_the_new_bars():
    starts, n = np.arange(0, 60, 10), 60  # six bars of ten source ids
    few = [5] * 6  # output ids per bar written
    assert [window_start(starts, n, few, a, 2, 160, 384) for a in (0, 1, 4, 5)] == [0, 0, 2, 3]
    # source from the first bar to the end of bar 4 (id 50) must fit max_src
    assert [window_start(starts, n, few, 4, 2, lim, 384) for lim in (30, 29, 20, 19)] == [
        2, 3, 3, 4]
    assert window_start(starts, n, few, 5, 2, 30, 384) == 3  # the last bar ends at n
    # output already written for the context bars must fit half of max_tgt
    dense = [5, 5, 100, 5, 5, 5]
    assert [window_start(starts, n, dense, 4, 2, 160, t) for t in (210, 209, 8)] == [2, 3, 4]
