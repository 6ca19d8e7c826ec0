"""One transformer, three faces sharing embeddings and output head.

- ``decode`` without an encoder output: causal decoder with segment memory and relative positions
  (Transformer-XL style recurrence: cached keys/values of earlier segments, no gradient through
  them).
- ``encode``: bidirectional encoder trained on masked tokens.
- ``encode`` then ``decode(enc=...)``: encoder-decoder for melody->chords and chords->melody.

Every token embedding is summed with a bar/beat position embedding (position in bar, bar mod 4).
The decoder's self-attention has options (``ModelConfig.attention``, ``bar_attention``; see
:mod:`symbolic.attention`); the encoder always uses the learned relative bias.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plumbing.errors import UserError
from symbolic.attention import (
    ATTENTIONS,
    Attention,
    Layout,
    RelativeBias,
    RelPositionAttention,
    absolute_bars,
    bar_layout,
    causal_bias,
    sinusoid,
)
from symbolic.config import ModelConfig

__all__ = ["Attention", "Block", "Memory", "MusicTransformer", "RelativeBias", "count_params",
           "trim_memory"]

# Per-layer memory of the decoder: (keys, values), each (B, H, M, Dh); with bar attention a third
# entry (B, M) holds the bar index of every memory position (the same tensor in every layer).
Memory = list[tuple[Tensor, ...]]


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, feed-forward."""

    def __init__(self, cfg: ModelConfig, cross: bool, txl: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = (RelPositionAttention if txl else Attention)(cfg.d_model, cfg.n_heads)
        self.cross = Attention(cfg.d_model, cfg.n_heads) if cross else None
        self.norm_c = nn.LayerNorm(cfg.d_model) if cross else None
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, layout: Layout, mem: tuple[Tensor, ...] | None = None,
                enc: Tensor | None = None, enc_bias: Tensor | None = None,
                enc_kv: tuple[Tensor, Tensor] | None = None,
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Returns the new hidden state (B, T, D) and this layer's keys/values incl. memory.

        ``enc_kv``: this layer's cross-attention keys/values of ``enc``, computed once
        (:meth:`MusicTransformer.cross_kv`) instead of at every sampled token.
        """
        h = self.norm1(x)
        k, v = self.attn.kv_of(h)
        if mem is not None:
            k, v = torch.cat([mem[0], k], dim=2), torch.cat([mem[1], v], dim=2)
        x = x + self.drop(self.attn(h, k, v, layout))
        if enc is not None and self.cross is not None:
            ek, ev = enc_kv if enc_kv is not None else self.cross.kv_of(enc)
            x = x + self.drop(self.cross(self.norm_c(x), ek, ev, Layout(enc_bias)))
        x = x + self.drop(self.ff(self.norm2(x)))
        return x, (k, v)


def _pad_bias(pad: Tensor | None, n_q: int) -> Tensor | None:
    """Key padding mask (B, S) True = padding -> additive bias (B, 1, n_q, S)."""
    if pad is None:
        return None
    neg = torch.zeros(pad.shape, dtype=torch.float32, device=pad.device)
    neg = neg.masked_fill(pad, float("-inf"))
    return neg[:, None, None, :].expand(-1, 1, n_q, -1)


class MusicTransformer(nn.Module):
    """The multitask model: shared embeddings + encoder stack + decoder stack + tied output head."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0 or cfg.n_pos <= 0:
            raise ValueError("ModelConfig.vocab_size and n_pos must be set from the tokenizer")
        if cfg.attention not in ATTENTIONS:
            raise UserError(f"model.attention={cfg.attention!r}: use {' or '.join(ATTENTIONS)}")
        self.cfg = cfg
        self.txl = cfg.attention == "txl"
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.n_pos + 1, cfg.d_model)  # last slot: no Position yet in bar
        self.bar_emb = nn.Embedding(4, cfg.d_model)
        self.enc_bias = RelativeBias(cfg.n_heads, cfg.max_rel)
        # Transformer-XL attention carries its own position terms: no learned decoder bias table.
        self.dec_bias = None if self.txl else RelativeBias(cfg.n_heads, cfg.max_rel)
        self.encoder = nn.ModuleList(Block(cfg, cross=False) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(Block(cfg, cross=True, txl=self.txl)
                                     for _ in range(cfg.dec_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model)
        self.dec_norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.align_proj = nn.Linear(cfg.d_model, cfg.d_model) if cfg.align else None
        self.apply(self._init)
        if self.align_proj is not None:  # starts as a no-op: fine-tuning a model adds it safely
            nn.init.zeros_(self.align_proj.weight)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def embed(self, ids: Tensor, pos: Tensor, bar: Tensor) -> Tensor:
        """Token + bar/beat embeddings: ids, pos, bar (B, T) -> (B, T, D)."""
        return self.drop(self.tok_emb(ids) + self.pos_emb(pos) + self.bar_emb(bar))

    def logits(self, h: Tensor) -> Tensor:
        """Output head tied to the token embeddings: (B, T, D) -> (B, T, V)."""
        return h @ self.tok_emb.weight.T

    def encode(self, ids: Tensor, pos: Tensor, bar: Tensor, pad: Tensor | None = None) -> Tensor:
        """Bidirectional encoder.

        Args:
            ids, pos, bar: (B, S) tokens and their bar/beat positions.
            pad: (B, S) True where padding.

        Returns:
            (B, S, D) normed hidden states (apply ``logits`` for masked-token predictions).
        """
        x = self.embed(ids, pos, bar)
        t = torch.arange(ids.shape[1], device=ids.device)
        bias = self.enc_bias(t, t)
        pad_bias = _pad_bias(pad, ids.shape[1])
        if pad_bias is not None:
            bias = bias + pad_bias
        for block in self.encoder:
            x, _ = block(x, Layout(bias))
        return self.enc_norm(x)

    def decode(self, ids: Tensor, pos: Tensor, bar: Tensor, mem: Memory | None = None,
               enc: Tensor | None = None, enc_pad: Tensor | None = None,
               align: Tensor | None = None, enc_kv: Memory | None = None,
               ) -> tuple[Tensor, Memory]:
        """Causal decoder over one segment, attending to memory and optionally to an encoding.

        Args:
            ids, pos, bar: (B, T) tokens of this segment and their bar/beat positions.
            mem: per-layer cached keys/values of earlier tokens, each (B, H, M, Dh), or None.
            enc: (B, S, D) encoder output for seq2seq, or None for plain continuation.
            enc_pad: (B, S) True where the encoder input is padding.
            align: (B, T) index into ``enc`` of the source note at each token's time, ``-1``
                for none (:func:`symbolic.align.align_index`); required with ``enc`` when
                ``cfg.align``, ignored otherwise.
            enc_kv: :meth:`cross_kv` of ``enc`` (same values, not recomputed), or None.

        Returns:
            hidden: (B, T, D) normed hidden states.
            new_mem: per-layer keys/values of memory + this segment, (B, H, M + T, Dh), detached
                (with bar attention also the (B, M + T) bar indices).
        """
        x = self.embed(ids, pos, bar)
        if enc is not None and self.align_proj is not None:
            x = x + self._aligned(enc, align)
        layout, k_bar = self._dec_layout(bar, mem)
        enc_bias = _pad_bias(enc_pad, ids.shape[1])
        new_mem: Memory = []
        for i, block in enumerate(self.decoder):
            x, kv = block(x, layout, mem[i] if mem else None, enc, enc_bias,
                          enc_kv[i] if enc_kv else None)
            new_mem.append((kv[0].detach(), kv[1].detach(), *k_bar))
        return self.dec_norm(x), new_mem

    def cross_kv(self, enc: Tensor) -> Memory:
        """Every decoder layer's cross-attention keys/values of ``enc`` (B, S, D): each two
        (B, H, S, Dh). Sampling reads one encoding at every token: computed once, not per token."""
        return [block.cross.kv_of(enc) for block in self.decoder]

    def _aligned(self, enc: Tensor, align: Tensor | None) -> Tensor:
        """Projected encoder states enc (B, S, D) at ``align`` (B, T) -> (B, T, D).

        Where there is no source note yet (``-1``) the projection gets a zero input.
        """
        if align is None:
            raise ValueError("this model aligns target to source: decode(enc=...) needs align")
        idx = align.clamp(min=0)[..., None].expand(-1, -1, enc.shape[-1])
        picked = enc.gather(1, idx) * (align >= 0)[..., None]
        return self.align_proj(picked)

    def _dec_layout(self, bar: Tensor, mem: Memory | None) -> tuple[Layout, tuple[Tensor, ...]]:
        """The decoder self-attention's layout for a segment with bar input ``bar`` (B, T).

        Returns:
            The layout shared by all layers, and ``(k_bar,)`` (B, M + T) with bar attention
            (what memory keeps), else ``()``.
        """
        T, dev = bar.shape[1], bar.device
        M = 0 if not mem else mem[0][0].shape[2]
        bias = causal_bias(T, M, dev)
        rel = None
        if self.txl:
            rel = sinusoid(torch.arange(M + T - 1, -1, -1, device=dev), self.cfg.d_model)
        else:
            bias = self.dec_bias(torch.arange(M, M + T, device=dev),
                                 torch.arange(M + T, device=dev)) + bias
        if not self.cfg.bar_attention:
            return Layout(bias, rel), ()
        q_bar = absolute_bars(bar, mem[0][2][:, -1] if mem else None)
        k_bar = torch.cat([mem[0][2], q_bar], dim=1) if mem else q_bar
        token_bias, summaries = bar_layout(q_bar, k_bar, self.cfg.bar_offsets, M)
        return Layout(bias + token_bias, rel, summaries), (k_bar,)


def trim_memory(mem: Memory, keep: int) -> Memory:
    """Keeps the last ``keep`` positions of every layer's memory (and of its bar indices)."""
    if keep <= 0:
        return []
    return [(k[:, :, -keep:], v[:, :, -keep:], *(b[:, -keep:] for b in rest))
            for k, v, *rest in mem]


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
