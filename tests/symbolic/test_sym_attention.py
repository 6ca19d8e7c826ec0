"""Decoder attention options: Transformer-XL relative attention and Museformer bar attention."""

from __future__ import annotations

import pytest
import symusic
import torch

from plumbing.errors import UserError
from symbolic.attention import (
    BarSummaries,
    absolute_bars,
    bar_masks,
    rel_shift,
    rel_shift_gather,
)
from symbolic.checkpoint import load_export, model_from_export, read_export
from symbolic.config import ModelConfig, to_dataclass
from symbolic.grammar import Grammar, check_sequence
from symbolic.model import MusicTransformer, trim_memory
from symbolic.sample import SampleConfig, generate
from symbolic.tokens import encode, position_ids
from symbolic.train import build_model, compose_config, train

# (attention, bar_attention) of every non-default variant.
VARIANTS = [("txl", False), ("rel_bias", True), ("txl", True)]


def _model(attention: str, bar_attention: bool, offsets=(1, 2, 4)) -> MusicTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=2, d_ff=64, dropout=0.0,
                      seg_len=16, mem_len=16, max_rel=32, attention=attention,
                      bar_attention=bar_attention, bar_offsets=list(offsets))
    model = build_model(cfg).eval()
    with torch.no_grad():  # u, v start at zero: make them matter in the equivalence tests
        for name, p in model.named_parameters():
            if name.endswith((".u", ".v")):
                p.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def short_bars() -> symusic.Score:
    """Sixteen 4/4 bars of one note each (about 6 tokens a bar): many bars in a short sequence,
    so that own, related (1, 2, 4 back) and summarised bars all occur in 64 tokens."""
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("line")
    for b in range(16):
        track.notes.append(symusic.Note(b * 1920 + 480 * (b % 3), 480, 60 + (5 * b) % 12, 80))
    score.tracks.append(track)
    return score


def _inputs(tokenizer, table, score, n: int, n_pos: int):
    ids = torch.tensor([encode(tokenizer, score)[:n]])
    assert ids.shape[1] == n
    pos, bar = position_ids(ids, table, n_pos)
    return ids, pos, bar


def test_rel_shift_equals_the_gather():
    x = torch.randn(2, 3, 5, 12)
    T, S = 5, 12
    visible = torch.arange(S)[None, :] <= torch.arange(T)[:, None] + S - T
    assert torch.equal(rel_shift(x)[..., visible], rel_shift_gather(x)[..., visible])
    # Query i at key index S-T+i against key j: distance S-T+i-j, column S-1-distance.
    assert rel_shift(x)[0, 0, 2, 4] == x[0, 0, 2, 4 + T - 1 - 2]


@pytest.mark.parametrize("attention,bar_attention", VARIANTS)
def test_memory_equals_full_attention(attention, bar_attention, tokenizer, table, short_bars):
    """(a) [seg1; seg2] at once == seg1, then seg2 with all of seg1 as memory."""
    model = _model(attention, bar_attention)
    ids, pos, bar = _inputs(tokenizer, table, short_bars, 64, model.cfg.n_pos)
    with torch.no_grad():
        full, _ = model.decode(ids, pos, bar)
        h1, mem = model.decode(ids[:, :32], pos[:, :32], bar[:, :32])
        h2, _ = model.decode(ids[:, 32:], pos[:, 32:], bar[:, 32:], trim_memory(mem, 32))
    torch.testing.assert_close(h2, full[:, 32:], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h1, full[:, :32], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention,bar_attention", VARIANTS)
def test_decoder_stays_causal(attention, bar_attention, tokenizer, table, short_bars):
    model = _model(attention, bar_attention)
    ids, pos, bar = _inputs(tokenizer, table, short_bars, 40, model.cfg.n_pos)
    other = ids.clone()
    other[:, 25:] = other[:, 25:].flip(1)
    with torch.no_grad():
        a, _ = model.decode(ids, pos, bar)
        b, _ = model.decode(other, pos, bar)
    torch.testing.assert_close(a[:, :25], b[:, :25], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 25:], b[:, 25:])


@pytest.mark.parametrize("attention,bar_attention", VARIANTS)
def test_token_by_token_matches_teacher_forcing(attention, bar_attention, tokenizer, table,
                                                short_bars):
    """The sampling path (one token per call, grammar-tracked bar mod 4) == one forward."""
    model = _model(attention, bar_attention)
    ids, pos, bar = _inputs(tokenizer, table, short_bars, 64, model.cfg.n_pos)
    with torch.no_grad():
        full, _ = model.decode(ids, pos, bar)
        g, mem, steps = Grammar(table), None, []
        for tok in ids[0].tolist():
            g.consume(tok)
            p, b = g.embed_ids(model.cfg.n_pos)
            h, mem = model.decode(torch.tensor([[tok]]), torch.tensor([[p]]),
                                  torch.tensor([[b]]), mem)
            steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_bar_attention_is_full_attention_until_a_bar_is_summarised(tokenizer, table, short_bars):
    """Same weights with and without bar attention (offsets 1, 2, 4): equal outputs in bars 0-2
    (every earlier bar is related), different from bar 3 on (bar 0 is only a summary)."""
    plain, bars = _model("rel_bias", False), _model("rel_bias", True)
    ids, pos, bar = _inputs(tokenizer, table, short_bars, 64, plain.cfg.n_pos)
    n = absolute_bars(bar)[0] - absolute_bars(bar)[0, 0]  # bars from the first one
    assert n.max() >= 8
    with torch.no_grad():
        a, _ = plain.decode(ids, pos, bar)
        b, _ = bars.decode(ids, pos, bar)
    early = n <= 2
    torch.testing.assert_close(a[:, early], b[:, early], atol=1e-6, rtol=0)
    assert (a[0, ~early] - b[0, ~early]).abs().amax(-1).min() > 1e-4


def test_absolute_bars_from_bar_mod_4():
    mod = torch.tensor([[0, 0, 1, 2, 2, 3, 0, 1, 2, 3, 0, 1]])
    want = torch.tensor([[0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]])
    assert torch.equal(absolute_bars(mod), want)
    # Continued from memory whose last token was in bar 6 (or 7): the same count.
    assert torch.equal(absolute_bars(mod[:, 9:], last=torch.tensor([6])), want[:, 9:])
    assert torch.equal(absolute_bars(mod[:, 10:], last=torch.tensor([7])), want[:, 10:])


# Tokens in bars 0,0,1,2,2,3,...,9 with offsets (1, 2, 4), written out by hand:
# query -> (keys read in full, bars read as summaries).
BARS = [0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]
BY_HAND = {
    0: ([0], []),
    1: ([0, 1], []),
    2: ([0, 1, 2], []),                      # bar 1: bar 0 is 1 back
    3: ([0, 1, 2, 3], []),                   # bar 2: bars 1, 0
    4: ([0, 1, 2, 3, 4], []),
    5: ([2, 3, 4, 5], [0]),                  # bar 3: bars 2, 1; bar 0 (3 back) summarised
    6: ([0, 1, 3, 4, 5, 6], [1]),            # bar 4: bars 3, 2, 0
    7: ([2, 5, 6, 7], [0, 2]),               # bar 5: bars 4, 3, 1
    8: ([3, 4, 6, 7, 8], [0, 1, 3]),         # bar 6: bars 5, 4, 2
    9: ([5, 7, 8, 9], [0, 1, 2, 4]),         # bar 7: bars 6, 5, 3
    10: ([6, 8, 9, 10], [0, 1, 2, 3, 5]),    # bar 8: bars 7, 6, 4
    11: ([7, 9, 10, 11], [0, 1, 2, 3, 4, 6]),  # bar 9: bars 8, 7, 5
}


def _hand_masks(queries):
    tok = torch.zeros(len(queries), len(BARS), dtype=torch.bool)
    summ = torch.zeros(len(queries), 10, dtype=torch.bool)
    for row, q in enumerate(queries):
        keys, bars = BY_HAND[q]
        tok[row, keys] = True
        summ[row, bars] = True
    return tok, summ


def test_bar_mask_equals_the_hand_written_one():
    """(b) Full keys: own bar causally + related bars; summaries: every other earlier bar."""
    bars = torch.tensor([BARS])
    token_ok, summary_ok, summary_bar = bar_masks(bars, bars, (1, 2, 4))
    tok, summ = _hand_masks(range(12))
    assert torch.equal(summary_bar[0], torch.arange(10))
    assert torch.equal(token_ok[0], tok)
    assert torch.equal(summary_ok[0], summ)
    assert not torch.any(token_ok[0].triu(1))  # causal


def test_bar_mask_with_memory_gives_the_same_rows():
    bars = torch.tensor([BARS])
    token_ok, summary_ok, _ = bar_masks(bars[:, 7:], bars, (1, 2, 4), n_mem=7)
    tok, summ = _hand_masks(range(7, 12))
    assert torch.equal(token_ok[0], tok)
    assert torch.equal(summary_ok[0], summ)


def test_bar_summaries_are_means_of_each_bar():
    k_bar = torch.tensor([[3, 3, 4, 5, 5, 5]])
    ok = torch.ones(1, 2, 3, dtype=torch.bool)
    s = BarSummaries.build(k_bar, torch.tensor([[3, 4, 5]]), ok)
    k, v = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    k2, v2, bias = s.extend(k, v, torch.zeros(1, 1, 2, 6))
    torch.testing.assert_close(k2[:, :, 6], k[:, :, :2].mean(2))
    torch.testing.assert_close(v2[:, :, 8], v[:, :, 3:].mean(2))
    assert bias.shape == (1, 2, 2, 9) and torch.all(bias == 0)


@pytest.mark.parametrize("overrides", [["model.attention=txl"], ["model.bar_attention=true"],
                                       ["model.attention=txl", "model.bar_attention=true",
                                        "model.bar_offsets=[1,2]"]])
def test_each_option_trains_and_samples(overrides, cache_dir, tmp_path, tiny_overrides, table):
    """(c) One training step through the hydra entry, export, load, grammar-constrained sampling."""
    cfg = compose_config(tiny_overrides(cache_dir, tmp_path / "run", 1) + overrides)
    model = load_export(train(cfg))
    for key in ("attention", "bar_attention", "bar_offsets"):
        assert getattr(model.cfg, key) == getattr(cfg.model, key)
    bos = table.id("BOS_None")
    for use_memory in (True, False):
        g = Grammar(table, max_bars=2, exact=True)
        g.consume(bos)
        new = generate(model, table, [bos], g, SampleConfig(seed=0), max_new=40,
                       use_memory=use_memory)
        check_sequence([bos, *new, table.id("EOS_None")], table)
        assert len(new) > 4


def test_config_without_new_keys_loads_as_before(tiny_export, tokenizer, table, chorale):
    """(d) An export whose config predates the options loads strictly and gives the same output."""
    blob = read_export(tiny_export)
    old = {k: v for k, v in blob["config"].items()
           if k not in ("attention", "bar_attention", "bar_offsets")}
    cfg = to_dataclass(ModelConfig, old)
    assert (cfg.attention, cfg.bar_attention) == ("rel_bias", False)
    a = model_from_export({**blob, "config": old})
    b = load_export(tiny_export)
    ids, pos, bar = _inputs(tokenizer, table, chorale, 40, a.cfg.n_pos)
    with torch.no_grad():
        ha, mem = a.decode(ids, pos, bar)
        hb, _ = b.decode(ids, pos, bar)
    assert torch.equal(ha, hb)
    assert all(len(layer) == 2 for layer in mem)  # default memory: keys and values only
    assert not any(k.endswith((".u", ".v", ".r.weight")) for k in blob["model"])


def test_variants_own_exactly_their_parameters():
    base = set(_model("rel_bias", False).state_dict())
    assert set(_model("rel_bias", True).state_dict()) == base  # bar attention adds no weights
    txl = set(_model("txl", False).state_dict())
    assert {k for k in base - txl} == {"dec_bias.table.weight"}
    assert {k.split(".", 3)[-1] for k in txl - base} == {"u", "v", "r.weight"}


def test_unknown_attention_fails_fast():
    with pytest.raises(UserError, match="txl"):
        _model("xl", False)
