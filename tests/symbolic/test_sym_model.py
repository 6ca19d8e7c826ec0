"""The three faces: decoder causality, memory equivalence, encoder bidirectionality, configs."""

from __future__ import annotations

import pytest
import torch

from symbolic.config import ModelConfig
from symbolic.grammar import Grammar
from symbolic.model import MusicTransformer, trim_memory
from symbolic.tokens import encode, position_ids
from symbolic.train import build_model, compose_config


@pytest.fixture(scope="module")
def model() -> MusicTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=2, dec_layers=2, d_ff=64, dropout=0.0,
                      seg_len=16, mem_len=16, max_rel=32)
    return build_model(cfg).eval()


def _inputs(tokenizer, table, chorale, n: int, n_pos: int):
    ids = torch.tensor([encode(tokenizer, chorale)[:n]])
    pos, bar = position_ids(ids, table, n_pos)
    return ids, pos, bar


def _embedding_grads(model, run, t: int) -> torch.Tensor:
    """|d out[t] / d embedding[s]| summed over features, for every input position s."""
    store = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["emb"] = out

    handle = model.tok_emb.register_forward_hook(keep)
    try:
        out = run()
    finally:
        handle.remove()
    # A random projection: the plain sum of a LayerNorm output has no gradient at all.
    probe = torch.randn(out.shape[-1], generator=torch.Generator().manual_seed(0))
    (out[0, t] @ probe).backward()
    return store["emb"].grad[0].abs().sum(-1)


def test_decoder_is_causal(model, tokenizer, table, chorale):
    ids, pos, bar = _inputs(tokenizer, table, chorale, 24, model.cfg.n_pos)
    t = 10
    g = _embedding_grads(model, lambda: model.decode(ids, pos, bar)[0], t)
    assert torch.all(g[: t + 1] > 0)
    assert torch.all(g[t + 1:] == 0)


def test_encoder_is_bidirectional(model, tokenizer, table, chorale):
    ids, pos, bar = _inputs(tokenizer, table, chorale, 24, model.cfg.n_pos)
    g = _embedding_grads(model, lambda: model.encode(ids, pos, bar), 5)
    assert torch.all(g > 0)  # position 5 sees the past and the future


def test_memory_matches_full_context(model, tokenizer, table, chorale):
    """Two segments with memory == one pass over both (mem_len covers the first segment)."""
    ids, pos, bar = _inputs(tokenizer, table, chorale, 32, model.cfg.n_pos)
    full, _ = model.decode(ids, pos, bar)
    h1, mem = model.decode(ids[:, :16], pos[:, :16], bar[:, :16])
    h2, _ = model.decode(ids[:, 16:], pos[:, 16:], bar[:, 16:], trim_memory(mem, 16))
    torch.testing.assert_close(torch.cat([h1, h2], 1), full, atol=1e-5, rtol=1e-4)


def test_token_by_token_matches_teacher_forcing(model, tokenizer, table, chorale):
    """Incremental decoding (cached keys/values, grammar-tracked positions) == one forward."""
    ids, pos, bar = _inputs(tokenizer, table, chorale, 20, model.cfg.n_pos)
    full, _ = model.decode(ids, pos, bar)
    g, mem, steps = Grammar(table), None, []
    for tok in ids[0].tolist():
        g.consume(tok)
        p, b = g.embed_ids(model.cfg.n_pos)
        h, mem = model.decode(torch.tensor([[tok]]), torch.tensor([[p]]), torch.tensor([[b]]), mem)
        steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_cross_attention_uses_the_encoding(model, tokenizer, table, chorale):
    ids, pos, bar = _inputs(tokenizer, table, chorale, 16, model.cfg.n_pos)
    enc = model.encode(ids, pos, bar)
    a, _ = model.decode(ids, pos, bar, enc=enc)
    b, _ = model.decode(ids, pos, bar, enc=enc.flip(1))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_every_shipped_config_builds_and_runs(size, tokenizer, table, chorale):
    cfg = compose_config([f"model={size}"])
    model = build_model(cfg.model).eval()
    ids, pos, bar = _inputs(tokenizer, table, chorale, 40, model.cfg.n_pos)
    h, mem = model.decode(ids, pos, bar)
    assert model.logits(h).shape == (1, 40, table.size)
    assert len(mem) == cfg.model.dec_layers


def test_config_typo_fails_fast():
    with pytest.raises(Exception, match="stpes"):
        compose_config(["trainer.stpes=3"])
    from plumbing.errors import UserError
    from symbolic.config import TrainConfig, to_dataclass

    with pytest.raises(UserError, match="d_modle"):
        to_dataclass(TrainConfig, {"model": {"d_modle": 3}})
    with pytest.raises(UserError, match="lots"):  # a wrong type fails as fast
        to_dataclass(TrainConfig, {"trainer": {"steps": "lots"}})
