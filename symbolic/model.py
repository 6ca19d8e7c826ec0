"""One transformer, three faces sharing embeddings and output head.

- ``decode`` without an encoder output: causal decoder with segment memory and relative positions
  (Transformer-XL style recurrence: cached keys/values of earlier segments, no gradient through
  them).
- ``encode``: bidirectional encoder trained on masked tokens.
- ``encode`` then ``decode(enc=...)``: encoder-decoder for melody->chords and chords->melody.

Every token embedding is summed with a bar/beat position embedding (position in bar, bar mod 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbolic.config import ModelConfig

# Per-layer memory of the decoder: (keys, values), each (B, H, M, Dh).
Memory = list[tuple[Tensor, Tensor]]


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


class Attention(nn.Module):
    """Multi-head attention whose keys/values may come from another sequence or a cache."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, Dh)

    def kv_of(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``src`` (B, S, D): two (B, H, S, Dh)."""
        k, v = self.kv(src).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        """Attends ``x`` (B, T, D) to ``k``/``v`` (B, H, S, Dh); ``bias`` adds to the logits."""
        q = self.split(self.q(x))
        # No dropout on attention weights: sampling a (B, H, T, S) mask dominated CPU step time.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        B, H, T, Dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, T, H * Dh))


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, feed-forward."""

    def __init__(self, cfg: ModelConfig, cross: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = Attention(cfg.d_model, cfg.n_heads)
        self.cross = Attention(cfg.d_model, cfg.n_heads) if cross else None
        self.norm_c = nn.LayerNorm(cfg.d_model) if cross else None
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor, mem: tuple[Tensor, Tensor] | None = None,
                enc: Tensor | None = None, enc_bias: Tensor | None = None,
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Returns the new hidden state (B, T, D) and this layer's keys/values incl. memory."""
        h = self.norm1(x)
        k, v = self.attn.kv_of(h)
        if mem is not None:
            k, v = torch.cat([mem[0], k], dim=2), torch.cat([mem[1], v], dim=2)
        x = x + self.drop(self.attn(h, k, v, bias))
        if enc is not None and self.cross is not None:
            ek, ev = self.cross.kv_of(enc)
            x = x + self.drop(self.cross(self.norm_c(x), ek, ev, enc_bias))
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
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.n_pos + 1, cfg.d_model)  # last slot: no Position yet in bar
        self.bar_emb = nn.Embedding(4, cfg.d_model)
        self.enc_bias = RelativeBias(cfg.n_heads, cfg.max_rel)
        self.dec_bias = RelativeBias(cfg.n_heads, cfg.max_rel)
        self.encoder = nn.ModuleList(Block(cfg, cross=False) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.dec_layers))
        self.enc_norm = nn.LayerNorm(cfg.d_model)
        self.dec_norm = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)

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
            x, _ = block(x, bias)
        return self.enc_norm(x)

    def decode(self, ids: Tensor, pos: Tensor, bar: Tensor, mem: Memory | None = None,
               enc: Tensor | None = None, enc_pad: Tensor | None = None,
               ) -> tuple[Tensor, Memory]:
        """Causal decoder over one segment, attending to memory and optionally to an encoding.

        Args:
            ids, pos, bar: (B, T) tokens of this segment and their bar/beat positions.
            mem: per-layer cached keys/values of earlier tokens, each (B, H, M, Dh), or None.
            enc: (B, S, D) encoder output for seq2seq, or None for plain continuation.
            enc_pad: (B, S) True where the encoder input is padding.

        Returns:
            hidden: (B, T, D) normed hidden states.
            new_mem: per-layer keys/values of memory + this segment, (B, H, M + T, Dh), detached.
        """
        T = ids.shape[1]
        M = 0 if not mem else mem[0][0].shape[2]
        x = self.embed(ids, pos, bar)
        q_pos = torch.arange(M, M + T, device=ids.device)
        k_pos = torch.arange(M + T, device=ids.device)
        causal = torch.zeros(T, M + T, device=ids.device)
        causal = causal.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
        bias = self.dec_bias(q_pos, k_pos) + causal
        enc_bias = _pad_bias(enc_pad, T)
        new_mem: Memory = []
        for i, block in enumerate(self.decoder):
            x, kv = block(x, bias, mem[i] if mem else None, enc, enc_bias)
            new_mem.append((kv[0].detach(), kv[1].detach()))
        return self.dec_norm(x), new_mem


def trim_memory(mem: Memory, keep: int) -> Memory:
    """Keeps the last ``keep`` positions of every layer's memory."""
    return [(k[:, :, -keep:], v[:, :, -keep:]) for k, v in mem] if keep > 0 else []


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
