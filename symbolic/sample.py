"""Grammar-constrained sampling for the three faces of the model.

- ``generate``: decoder sampling (continuation, or seq2seq with an encoder output), with segment
  memory so each new token costs the same (linear total), or without it (re-reads its context).
- ``fill``: iterative masked filling with the bidirectional encoder (remix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from symbolic.align import SourceNotes
from symbolic.grammar import Grammar
from symbolic.model import Memory, MusicTransformer, trim_memory
from symbolic.tokens import K_BAR, K_DUR, K_PITCH, TokenTable, position_ids

Bias = Callable[[Grammar], "np.ndarray | None"]


@dataclass
class SampleConfig:
    """Sampling controls.

    Attributes:
        pitch_temp: temperature of Pitch tokens.
        timing_temp: temperature of every other token (Bar, Position, Duration, ...).
        top_k: keep the k most likely allowed tokens (0: all).
        top_p: keep the smallest set of tokens whose probability reaches p (1.0: all).
        seed: random seed; same seed, same output.
        candidates: seq2seq windows sampled per source window; the consensus one is kept
            (:mod:`symbolic.consensus`; 1: the single sample).
        consonance: weight of on-beat consonance with the source in that choice.
        context_bars: bars each seq2seq window after the first reaches back: its decoder
            continues the output already kept for them, so voices run on across windows
            (None: half the model's window; 0: every window starts afresh).
        chord_guide: melody->harmony only: weight of the chord tagger's bias on pitches
            written on a beat (:mod:`symbolic.guide`; 0: off).
        chord_judge: melody->harmony only: weight of the candidates' expected Jaccard under
            the chord tagger in the consensus choice (0: off).
    """

    pitch_temp: float = 1.0
    timing_temp: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    candidates: int = 1
    consonance: float = 0.0
    context_bars: int | None = None
    chord_guide: float = 0.0
    chord_judge: float = 0.0

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError(f"SampleConfig.candidates must be >= 1, got {self.candidates}")
        if not self.consonance >= 0:  # NaN too
            raise ValueError(f"SampleConfig.consonance must be >= 0, got {self.consonance:g}")
        if self.context_bars is not None and self.context_bars < 0:
            raise ValueError(f"SampleConfig.context_bars must be >= 0, got {self.context_bars}")
        for name in ("chord_guide", "chord_judge"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"SampleConfig.{name} must be >= 0, got {getattr(self, name):g}")


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
    if use_memory:
        return generate_many(model, table, prefix, [grammar], [cfg.seed], cfg, max_new, enc,
                             enc_pad, source)[0]
    gen = torch.Generator().manual_seed(cfg.seed)
    window = model.cfg.mem_len + model.cfg.seg_len
    tokens, new = list(prefix), []
    aligned = source.indices(tokens) if source is not None else None
    for _ in range(_budget(max_new, grammar)):
        ids, pos, bar = _ids_tensor(tokens[-window:], table, model.cfg.n_pos)
        h, _ = model.decode(ids, pos, bar, None, enc, enc_pad, _row(aligned, -window))
        tok = _next_token(model.logits(h[0, -1]), grammar, len(new) >= max_new, table, cfg, gen)
        if tok is None:
            break
        tokens.append(tok)
        new.append(tok)
        if aligned is not None:
            aligned.append(source.index(grammar))
    return new


@torch.no_grad()
def generate_many(model: MusicTransformer, table: TokenTable, prefix: list[int],
                  grammars: list[Grammar], seeds: list[int], cfg: SampleConfig, max_new: int,
                  enc: Tensor | None = None, enc_pad: Tensor | None = None,
                  source: SourceNotes | None = None, bias: Bias | None = None,
                  ) -> list[list[int]]:
    """Samples one sequence per grammar, all rows in one batch with cached keys/values.

    Rows share ``prefix`` (read once), the encoding and its cross-attention keys/values
    (computed once), and differ by their seeds: row ``b`` is what :func:`generate` samples with
    ``seed=seeds[b]`` (token for token in the tests; batched float rounding could differ). A
    finished row keeps stepping with a dummy token until the last one ends; rows never attend
    to each other.

    Args:
        model: the model (eval mode).
        table: token table.
        prefix: token ids given to every row (BOS or a task token first).
        grammars: one automaton per row, each after ``prefix``.
        seeds: one random seed per row, as many as ``grammars``.
        cfg: sampling controls (its ``seed`` is not used: ``seeds`` are).
        max_new: token budget of each row, as in :func:`generate`.
        enc: (1, S, D) encoder output shared by the rows, or None.
        enc_pad: (1, S) encoder padding mask.
        source: the encoded source's notes, for a model with ``cfg.align``.
        bias: ``bias(grammar)`` -> additive logits (V,) for a row's next token, or None for
            none (:meth:`symbolic.guide.ChordGuide.bias`).

    Returns:
        The new token ids of every row (EOS excluded), in the order of ``grammars``.
    """
    if not grammars or len(seeds) != len(grammars):
        raise ValueError(f"generate_many needs one seed per grammar, got {len(seeds)} seeds "
                         f"for {len(grammars)} grammars")
    B, c = len(grammars), model.cfg
    window = c.mem_len + c.seg_len
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    start = source.indices(prefix) if source is not None else None
    aligned = None if start is None else [list(start) for _ in range(B)]
    enc_kv = None if enc is None else model.cross_kv(enc)
    mem, first = _prime(model, prefix, table, enc, enc_pad, start, enc_kv)
    rows = lambda x: x.expand(B, *x.shape[1:])  # noqa: E731 -- a view per row, no copy
    mem = [tuple(map(rows, layer)) for layer in mem]
    enc_kv = None if enc_kv is None else [tuple(map(rows, layer)) for layer in enc_kv]
    enc_b, pad_b = (None if t is None else rows(t) for t in (enc, enc_pad))
    logits = first.expand(B, -1)
    new: list[list[int]] = [[] for _ in range(B)]
    budgets = [_budget(max_new, g) for g in grammars]
    live = [True] * B
    eos = table.vocab["EOS_None"]
    for i in range(max(budgets)):
        step = []
        for b, g in enumerate(grammars):
            tok = None
            if live[b] and i < budgets[b]:
                extra = None if bias is None else bias(g)
                row = logits[b] if extra is None else logits[b] + torch.from_numpy(extra)
                tok = _next_token(row, g, len(new[b]) >= max_new, table, cfg, gens[b])
            live[b] = tok is not None
            if live[b]:
                new[b].append(tok)
                if aligned is not None:
                    aligned[b].append(source.index(g))
            step.append((tok if live[b] else eos, *g.embed_ids(c.n_pos)))
        if not any(live):
            break
        ids, pos, bar = torch.tensor(step).T[..., None]  # three (B, 1)
        align = None if aligned is None else torch.tensor([[a[-1]] for a in aligned])
        h, mem = model.decode(ids, pos, bar, mem, enc_b, pad_b, align, enc_kv)
        mem = mem if mem[0][0].shape[2] <= window else trim_memory(mem, c.mem_len)
        logits = model.logits(h[:, -1])
    return new


def _budget(max_new: int, grammar: Grammar) -> int:
    """Steps to allow: room for the note in progress and the empty bars still promised."""
    return max_new + 8 + 2 * (grammar.max_bars or 0)


def _next_token(logits: Tensor, grammar: Grammar, closing: bool, table: TokenTable,
                cfg: SampleConfig, gen: torch.Generator) -> int | None:
    """Samples and consumes the next token; None at EOS or when the grammar allows nothing."""
    grammar.closing = closing
    allowed = grammar.allowed()
    if not allowed.any():
        return None
    tok = pick(logits, allowed, table, cfg, gen)
    if tok == table.vocab["EOS_None"]:
        return None
    grammar.consume(tok)
    return tok


def _row(aligned: list[int] | None, start: int, end: int | None = None) -> Tensor | None:
    """``aligned[start:end]`` as a (1, T) tensor for ``decode``, or None without alignment."""
    return None if aligned is None else torch.tensor([aligned[start:end]])


def _prime(model: MusicTransformer, tokens: list[int], table: TokenTable, enc: Tensor | None,
           enc_pad: Tensor | None, aligned: list[int] | None,
           enc_kv: Memory | None) -> tuple[Memory, Tensor]:
    """Reads the prompt segment by segment (as in training); returns memory and next logits."""
    ids, pos, bar = _ids_tensor(tokens, table, model.cfg.n_pos)
    mem: Memory | None = None
    S = model.cfg.seg_len
    for s in range(0, ids.shape[1], S):
        sl = slice(s, s + S)
        h, mem = model.decode(ids[:, sl], pos[:, sl], bar[:, sl], mem, enc, enc_pad,
                              _row(aligned, s, s + S), enc_kv)
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

