"""Grammar-constrained sampling for the three faces of the model.

- ``generate``: decoder sampling (continuation, or seq2seq with an encoder output), with segment
  memory so each new token costs the same (linear total), or without it (re-reads its context).
- ``fill``: iterative masked filling with the bidirectional encoder (remix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from symbolic.align import SourceNotes
from symbolic.grammar import Grammar
from symbolic.model import Memory, MusicTransformer, trim_memory
from symbolic.tokens import K_BAR, K_DUR, K_PITCH, TokenTable, position_ids


@dataclass
class SampleConfig:
    """Sampling controls.

    Attributes:
        pitch_temp: temperature of Pitch tokens.
        timing_temp: temperature of every other token (Bar, Position, Duration, ...).
        top_k: keep the k most likely allowed tokens (0: all).
        top_p: keep the smallest set of tokens whose probability reaches p (1.0: all).
        seed: random seed; same seed, same output.
    """

    pitch_temp: float = 1.0
    timing_temp: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def pick(logits: Tensor, allowed: np.ndarray, table: TokenTable, cfg: SampleConfig,
         gen: torch.Generator) -> int:
    """Samples one token id from ``logits`` (V,) among ``allowed`` (V,) bool."""
    temp = torch.where(torch.as_tensor(table.kind == K_PITCH), cfg.pitch_temp, cfg.timing_temp)
    x = logits.float() / temp.clamp(min=1e-4)
    x = x.masked_fill(~torch.as_tensor(allowed), float("-inf"))
    if cfg.top_k > 0:
        kth = torch.topk(x, min(cfg.top_k, int(allowed.sum()))).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if cfg.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        # Drop tokens once the mass before them already reaches top_p (the first always stays).
        drop = torch.cumsum(sorted_p, 0) - sorted_p >= cfg.top_p
        probs[order[drop]] = 0.0
    return int(torch.multinomial(probs, 1, generator=gen))


def _ids_tensor(tokens: list[int], table: TokenTable, n_pos: int) -> tuple[Tensor, ...]:
    ids = torch.tensor([tokens], dtype=torch.long)
    pos, bar = position_ids(ids, table, n_pos)
    return ids, pos, bar


@torch.no_grad()
def generate(model: MusicTransformer, table: TokenTable, prefix: list[int], grammar: Grammar,
             cfg: SampleConfig, max_new: int, enc: Tensor | None = None,
             enc_pad: Tensor | None = None, use_memory: bool = True,
             source: SourceNotes | None = None) -> list[int]:
    """Samples tokens after ``prefix`` until EOS, the grammar's bar limit, or ``max_new`` tokens.

    Args:
        model: the model (eval mode).
        table: token table.
        prefix: token ids already given (BOS or a task token first); ``grammar`` has consumed them.
        grammar: automaton state after ``prefix``; decides which tokens are allowed.
        cfg: sampling controls.
        max_new: token budget; near it the grammar closes the current note and the sequence ends.
        enc: (1, S, D) encoder output for seq2seq, or None.
        enc_pad: (1, S) encoder padding mask.
        use_memory: cache keys/values across tokens (constant cost per token); False re-reads the
            last ``mem_len + seg_len`` tokens at every step (the slow reference for the bench).
        source: the encoded source's notes, for a model with ``cfg.align`` (seq2seq only).

    Returns:
        The new token ids (EOS and a bar-limit-exceeding Bar excluded).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    c, n_pos = model.cfg, model.cfg.n_pos
    window = c.mem_len + c.seg_len
    tokens, new = list(prefix), []
    aligned = source.indices(tokens) if source is not None else None
    mem, logits = (_prime(model, tokens, table, enc, enc_pad, aligned) if use_memory
                   else (None, None))
    eos = table.vocab["EOS_None"]
    # Room for the note in progress and, when closing early, the empty bars still promised.
    for _ in range(max_new + 8 + 2 * (grammar.max_bars or 0)):
        if not use_memory:
            ids, pos, bar = _ids_tensor(tokens[-window:], table, n_pos)
            h, _ = model.decode(ids, pos, bar, None, enc, enc_pad, _row(aligned, -window))
            logits = model.logits(h[0, -1])
        grammar.closing = len(new) >= max_new
        allowed = grammar.allowed()
        if not allowed.any():
            break
        tok = pick(logits, allowed, table, cfg, gen)
        if tok == eos:
            break
        grammar.consume(tok)
        tokens.append(tok)
        new.append(tok)
        if aligned is not None:
            aligned.append(source.index(grammar))
        if use_memory:
            p, b = grammar.embed_ids(n_pos)
            step = (torch.tensor([[v]]) for v in (tok, p, b))
            h, mem = model.decode(*step, mem, enc, enc_pad, _row(aligned, -1))
            mem = mem if mem[0][0].shape[2] <= window else trim_memory(mem, c.mem_len)
            logits = model.logits(h[0, -1])
    return new


def _row(aligned: list[int] | None, start: int, end: int | None = None) -> Tensor | None:
    """``aligned[start:end]`` as a (1, T) tensor for ``decode``, or None without alignment."""
    return None if aligned is None else torch.tensor([aligned[start:end]])


def _prime(model: MusicTransformer, tokens: list[int], table: TokenTable, enc: Tensor | None,
           enc_pad: Tensor | None, aligned: list[int] | None) -> tuple[Memory, Tensor]:
    """Reads the prompt segment by segment (as in training); returns memory and next logits."""
    ids, pos, bar = _ids_tensor(tokens, table, model.cfg.n_pos)
    mem: Memory | None = None
    S = model.cfg.seg_len
    for s in range(0, ids.shape[1], S):
        sl = slice(s, s + S)
        h, mem = model.decode(ids[:, sl], pos[:, sl], bar[:, sl], mem, enc, enc_pad,
                              _row(aligned, s, s + S))
        mem = trim_memory(mem, model.cfg.mem_len) if s + S < ids.shape[1] else mem
    return mem, model.logits(h[0, -1])


@torch.no_grad()
def fill(model: MusicTransformer, table: TokenTable, tokens: list[int], kind: int,
         cfg: SampleConfig, rounds: int = 4, chunk: int = 512) -> list[int]:
    """Re-writes every token of ``kind`` (Pitch or Duration) with the masked encoder.

    Each round masks all tokens still to write, encodes, and commits a random share of them, so
    later choices see earlier ones. Only tokens of ``kind`` may replace tokens of ``kind``: every
    other token, hence the kept dimension, is unchanged.

    Args:
        tokens: token ids of a piece (no BOS/EOS).
        kind: ``K_PITCH`` (keep rhythm) or ``K_DUR`` (keep pitches and onsets).
        rounds: commit rounds.
        chunk: longest encoder window in tokens (windows start at Bar tokens).

    Returns:
        The new token ids, same length as ``tokens``.
    """
    if kind not in (K_PITCH, K_DUR):
        raise ValueError("fill re-writes Pitch or Duration tokens only")
    gen = torch.Generator().manual_seed(cfg.seed)
    out = np.asarray(tokens, dtype=np.int64).copy()
    todo = table.kind[out] == kind
    allowed = table.kind == kind
    mask_id = table.vocab["MASK_None"]
    for r in range(rounds):
        n_left = int(todo.sum())
        if n_left == 0:
            break
        commit = todo & (np.random.default_rng(cfg.seed + r).random(len(out)) < 1 / (rounds - r))
        masked = np.where(todo, mask_id, out)
        logits = _encode_logits(model, table, masked, chunk)
        for i in np.nonzero(commit)[0]:
            out[i] = pick(logits[i], allowed, table, cfg, gen)
        todo &= ~commit
    return out.tolist()


def _encode_logits(model: MusicTransformer, table: TokenTable, ids: np.ndarray,
                   chunk: int) -> Tensor:
    """Encoder logits (T, V) of a long sequence, in windows cut at Bar tokens."""
    bars = np.nonzero(table.kind[ids] == K_BAR)[0].tolist() + [len(ids)]
    out, start = [], 0
    while start < len(ids):
        ends = [b for b in bars if start < b <= start + chunk]
        end = ends[-1] if ends else min(len(ids), start + chunk)
        x, pos, bar = _ids_tensor(ids[start:end].tolist(), table, model.cfg.n_pos)
        out.append(model.logits(model.encode(x, pos, bar))[0])
        start = end
    return torch.cat(out)

