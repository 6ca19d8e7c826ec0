"""Attention variants of the symbolic transformer and the masks they need.

- :class:`Attention` with a :class:`RelativeBias` (the default): learned per-head bias by clipped
  signed distance, added to the logits.
- :class:`RelPositionAttention` (``ModelConfig.attention = "txl"``): Transformer-XL relative
  attention (Dai et al. 2019, section 3.3). With sinusoidal encodings ``R`` of distances, a
  projection ``W_r`` and two learned biases per head ``u`` and ``v``::

      score(i, j) = (q_i + u) . k_j  +  (q_i + v) . W_r R_{i-j}

  The second term is one (T, S) matrix against the S distances, moved to key order with the
  relative shift (:func:`rel_shift`, pad-and-reshape, no gather). Keys are memory + the current
  segment and distances are counted from each query, so memory needs no positions of its own.
- Bar-aware attention (``ModelConfig.bar_attention``, Museformer, Yu et al. 2022): each token
  attends to the tokens of its own bar (causally) and of the structure-related bars (its bar minus
  each of ``bar_offsets``), and to one summary of every other earlier bar
  (:func:`bar_masks`, :class:`BarSummaries`).

Shapes: B batch, H heads, T queries (this segment), M memory, S = M + T keys, Dh head width,
NB bars among the keys.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTENTIONS = ("rel_bias", "txl")


class RelativeBias(nn.Module):
    """Learned per-head bias by signed relative distance, clipped at ``max_rel``."""

    def __init__(self, n_heads: int, max_rel: int):
        super().__init__()
        self.max_rel = max_rel
        self.table = nn.Embedding(2 * max_rel + 1, n_heads)

    def forward(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Bias for queries at ``q_pos`` (Tq,) and keys at ``k_pos`` (Tk,): (1, H, Tq, Tk)."""
        rel = (q_pos[:, None] - k_pos[None, :]).clamp(-self.max_rel, self.max_rel) + self.max_rel
        return self.table(rel).permute(2, 0, 1).unsqueeze(0)


@dataclass
class BarSummaries:
    """One summary key/value per bar among the keys, and which queries may read each.

    A bar's summary is the mean of that bar's keys and of its values, in every layer and head.
    Why the mean and not Museformer's learned summary tokens: it adds no parameters and no
    positions to the sequence, so token streams, memory layout, grammar-constrained sampling and
    checkpoints stay as they are; and since a query only reads summaries of bars that ended before
    its own bar began, the mean is causal, and identical whether the keys come from one pass or
    from memory + segment. Its logit ``q . mean(k)`` is the mean of the bar's logits: a cheap,
    coarse view of the bar, which is what the summaries are for.

    Attributes:
        weights: (B, S, NB) each key's share of its bar's mean (1 / bar size, else 0).
        bias: (B, 1, T, NB) additive: 0 where the query reads that bar's summary, -inf elsewhere.
    """

    weights: Tensor
    bias: Tensor

    @classmethod
    def build(cls, k_bar: Tensor, summary_bar: Tensor, summary_ok: Tensor) -> BarSummaries:
        """From key bars (B, S), summary bars (B, NB) and ``bar_masks``' (B, T, NB) mask."""
        member = (k_bar[:, :, None] == summary_bar[:, None, :]).float()  # (B, S, NB)
        weights = member / member.sum(1, keepdim=True).clamp(min=1.0)
        return cls(weights, _additive(summary_ok)[:, None])

    def extend(self, k: Tensor, v: Tensor, bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Appends the summaries to keys/values (B, H, S, Dh) and their logits bias.

        Args:
            k, v: (B, H, S, Dh) keys and values of memory + segment.
            bias: additive logits bias broadcastable to (B, H, T, S).

        Returns:
            keys and values (B, H, S + NB, Dh), bias (B, H, T, S + NB).
        """
        ks = torch.einsum("bsn,bhsd->bhnd", self.weights, k)
        vs = torch.einsum("bsn,bhsd->bhnd", self.weights, v)
        B, H, S, _ = k.shape
        T, NB = self.bias.shape[2], self.bias.shape[3]
        bias = torch.cat([bias.expand(B, H, T, S), self.bias.expand(B, H, T, NB)], dim=-1)
        return torch.cat([k, ks], 2), torch.cat([v, vs], 2), bias


@dataclass
class Layout:
    """What one self-attention call needs besides keys and values, built once for all layers.

    Attributes:
        bias: additive logits bias broadcastable to (B, H, T, S) (causal, padding, learned
            relative bias, bar mask), or None.
        rel: (S, D) sinusoidal encodings of the distances S-1 ... 0 (``txl``), or None.
        bars: bar summaries (``bar_attention``), or None.
    """

    bias: Tensor | None
    rel: Tensor | None = None
    bars: BarSummaries | None = None


class Attention(nn.Module):
    """Multi-head attention whose keys/values may come from another sequence or a cache."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, Dh)."""
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)

    def kv_of(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``src`` (B, S, D): two (B, H, S, Dh)."""
        k, v = self.kv(src).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def position_terms(self, q: Tensor, layout: Layout) -> tuple[Tensor, Tensor | None]:
        """Queries (B, H, T, Dh) and logits bias after positional terms; plain: unchanged."""
        return q, layout.bias

    def forward(self, x: Tensor, k: Tensor, v: Tensor, layout: Layout) -> Tensor:
        """Attends ``x`` (B, T, D) to ``k``/``v`` (B, H, S, Dh) as ``layout`` says: (B, T, D)."""
        q, bias = self.position_terms(self.split(self.q(x)), layout)
        if layout.bars is not None:
            k, v, bias = layout.bars.extend(k, v, bias)
        # No dropout on attention weights: sampling a (B, H, T, S) mask dominated CPU step time.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        B, H, T, Dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, H * Dh))


class RelPositionAttention(Attention):
    """Transformer-XL relative attention; one ``W_r``, ``u``, ``v`` per layer.

    The paper shares ``u`` and ``v`` across layers; one pair per layer (as ``untie_r`` in the
    reference code) keeps a layer self-contained and can only fit better.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__(d_model, n_heads)
        self.r = nn.Linear(d_model, d_model, bias=False)  # W_r: encodings -> position keys
        self.u = nn.Parameter(torch.zeros(n_heads, d_model // n_heads))  # content bias
        self.v = nn.Parameter(torch.zeros(n_heads, d_model // n_heads))  # position bias

    def position_terms(self, q: Tensor, layout: Layout) -> tuple[Tensor, Tensor | None]:
        """``q + u`` for the content term; the bias gains ``(q + v) . W_r R_{i-j} / sqrt(Dh)``.

        Args:
            q: (B, H, T, Dh) queries.
            layout: needs ``rel`` (S, D).

        Returns:
            (B, H, T, Dh) content queries and the (B, H, T, S) logits bias (scaled as SDPA scales
            the content term).
        """
        if layout.rel is None:
            raise ValueError("txl attention needs the relative encodings (Layout.rel)")
        r = self.split(self.r(layout.rel)[None])  # (1, H, S, Dh), distance S-1 ... 0
        bd = rel_shift((q + self.v[:, None]) @ r.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        bias = bd if layout.bias is None else bd + layout.bias
        return q + self.u[:, None], bias


def sinusoid(dist: Tensor, d_model: int) -> Tensor:
    """Transformer sinusoidal encodings of distances ``dist`` (S,): (S, D), [sin | cos]."""
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, device=dist.device).float() / d_model)
    angle = dist.float()[:, None] * inv_freq[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def rel_shift(x: Tensor) -> Tensor:
    """Moves logits against distances to logits against keys (Transformer-XL, appendix B).

    Args:
        x: (..., T, S) where ``x[..., i, c]`` scores query ``i`` against distance ``S - 1 - c``;
            query ``i`` sits at key index ``S - T + i`` (after the memory).

    Returns:
        (..., T, S) with ``out[..., i, j] = x[..., i, j + T - 1 - i]``, i.e. query ``i`` against
        key ``j`` at distance ``S - T + i - j``. Entries of future keys (``j > S - T + i``) hold
        other values and must be masked (causality does it).
    """
    *lead, T, S = x.shape
    padded = F.pad(x, (1, 0))  # (..., T, S + 1): a zero column in front of every row
    # Read as S + 1 rows of T, drop the first: each query row ends up shifted by T - 1 - i.
    return padded.view(*lead, S + 1, T)[..., 1:, :].reshape(*lead, T, S)


def rel_shift_gather(x: Tensor) -> Tensor:
    """Reference of :func:`rel_shift` by an explicit gather (future entries clamped)."""
    *_, T, S = x.shape
    i = torch.arange(T, device=x.device)[:, None]
    j = torch.arange(S, device=x.device)[None, :]
    idx = (j + T - 1 - i).clamp(max=S - 1).expand(x.shape)
    return torch.gather(x, -1, idx)


def causal_bias(T: int, M: int, device: torch.device | None = None) -> Tensor:
    """(T, M + T) additive mask: query ``t`` (key index ``M + t``) sees keys up to itself."""
    k = torch.arange(M + T, device=device)
    q = torch.arange(M, M + T, device=device)
    return torch.zeros(T, M + T, device=device).masked_fill(k[None] > q[:, None], float("-inf"))


def absolute_bars(bar_mod: Tensor, last: Tensor | None = None) -> Tensor:
    """Bar index of every token from the embeddings' ``bar mod 4`` input.

    Each token starts at most one bar, so the bar count advances by ``(bar - previous) % 4``
    (0 or 1) from token to token; no tokenizer is needed and memory continues the count.

    Args:
        bar_mod: (B, T) bar count modulo 4 (``tokens.position_ids``).
        last: (B,) bar index of the token before this segment (memory's last), or None.

    Returns:
        (B, T) non-decreasing bar indices, congruent to ``bar_mod`` modulo 4.
    """
    first = bar_mod[:, :1] if last is None else (last % 4)[:, None]
    start = bar_mod[:, 0] if last is None else last
    step = torch.diff(bar_mod, dim=1, prepend=first) % 4
    return start[:, None] + torch.cumsum(step, dim=1)


def bar_masks(q_bar: Tensor, k_bar: Tensor, offsets: Sequence[int], n_mem: int = 0,
              ) -> tuple[Tensor, Tensor, Tensor]:
    """Museformer's fine/coarse attention pattern from bar indices.

    Args:
        q_bar: (B, T) bar index of every query (the current segment).
        k_bar: (B, S) bar index of every key (memory then segment; S = n_mem + T), non-decreasing.
        offsets: structure-related bars: a query in bar ``b`` reads bars ``b - o`` in full.
        n_mem: memory length; query ``t`` sits at key index ``n_mem + t``.

    Returns:
        token_ok: (B, T, S) bool, key visible in full: not in the future, and in the query's own
            bar or a related one.
        summary_ok: (B, T, NB) bool, the query reads the summary of bar ``summary_bar``: an
            earlier bar, not related, with keys present.
        summary_bar: (B, NB) bar index of each summary slot (first key's bar onwards).
    """
    offs = torch.as_tensor(list(offsets), dtype=torch.long, device=q_bar.device)
    T, S = q_bar.shape[1], k_bar.shape[1]
    past = torch.arange(S, device=q_bar.device)[None, :] <= n_mem + torch.arange(
        T, device=q_bar.device)[:, None]  # (T, S)
    dist = q_bar[:, :, None] - k_bar[:, None, :]  # (B, T, S) bars back
    token_ok = past & ((dist == 0) | torch.isin(dist, offs))
    base = k_bar.min(dim=1).values
    n_bars = int((k_bar.max(dim=1).values - base).max()) + 1
    summary_bar = base[:, None] + torch.arange(n_bars, device=k_bar.device)[None, :]
    present = (k_bar[:, :, None] == summary_bar[:, None, :]).any(1)  # (B, NB)
    sdist = q_bar[:, :, None] - summary_bar[:, None, :]
    summary_ok = present[:, None, :] & (sdist > 0) & ~torch.isin(sdist, offs)
    return token_ok, summary_ok, summary_bar


def bar_layout(q_bar: Tensor, k_bar: Tensor, offsets: Sequence[int], n_mem: int,
               ) -> tuple[Tensor, BarSummaries]:
    """The (B, 1, T, S) additive token mask and the summaries of :func:`bar_masks`."""
    token_ok, summary_ok, summary_bar = bar_masks(q_bar, k_bar, offsets, n_mem)
    return _additive(token_ok)[:, None], BarSummaries.build(k_bar, summary_bar, summary_ok)


def _additive(ok: Tensor) -> Tensor:
    """Bool mask -> float 0 / -inf."""
    return torch.zeros(ok.shape, device=ok.device).masked_fill(~ok, float("-inf"))
