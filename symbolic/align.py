"""Hard time alignment of a seq2seq target to its source (``ModelConfig.align``).

Cross-attention alone has to learn which source note sounds at the target's time from the
bar/beat embeddings; the corpus model learnt it weakly (its voices formed one chord with the
melody on 41 % of beats). With ``align`` the decoder also gets, at every target token, the
encoder state of the last source note whose onset is at or before that token's time: the melody
note a lower voice is written against (for harmony->melody, the top note of the last chord).

Time is compared as an integer *key* per token: ``bars * (n_pos + 1) + slot`` where ``bars`` counts
the Bar tokens so far and ``slot`` is 0 before the bar's first Position, else Position value + 1.
Keys never decrease along a REMI sequence, so the last note at or before a time is a binary search.
"""

from __future__ import annotations

import bisect

import torch
from torch import Tensor

from symbolic.grammar import Grammar
from symbolic.tokens import K_PITCH, K_POS, TokenTable, bar_and_position

__all__ = ["SourceNotes", "align_index", "time_keys"]

NONE = -1  # no source note yet at this time


def _key(bars, pos, n_slots: int):
    """Time key from a bar count and a Position value (-1: none yet); ints or tensors."""
    return bars * n_slots + pos + 1


def time_keys(ids: Tensor, table: TokenTable) -> Tensor:
    """Time key of every token: ids (B, T) -> (B, T) long, never decreasing along T."""
    return _key(*bar_and_position(ids, table), len(table.ids(K_POS)) + 1)


def last_pitch_index(ids: Tensor, table: TokenTable) -> Tensor:
    """Index of the last Pitch token at or before each token: (B, S) -> (B, S), ``-1``: none."""
    is_pitch = torch.as_tensor(table.kind, device=ids.device)[ids] == K_PITCH
    s = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    return torch.cummax(torch.where(is_pitch, s, NONE), dim=1).values


def align_index(src: Tensor, tgt: Tensor, table: TokenTable) -> Tensor:
    """Index of the last source Pitch token at or before each target token's time.

    Right padding of ``src`` needs no mask: a pad token carries the last real Pitch index
    forward, so a target time past the source's end still gets its last real note.

    Args:
        src: (B, S) source ids (padded on the right).
        tgt: (B, T) target ids (decoder input).
        table: token table.

    Returns:
        (B, T) long indices into ``src``, ``-1`` where no source note has started yet.
    """
    upto = torch.searchsorted(time_keys(src, table).contiguous(),
                              time_keys(tgt, table).contiguous(), right=True) - 1
    found = torch.gather(last_pitch_index(src, table), 1, upto.clamp(min=0))
    return torch.where(upto >= 0, found, torch.full_like(found, NONE))


class SourceNotes:
    """One source's notes for step-by-step generation: grammar state -> aligned index."""

    def __init__(self, src_ids: list[int], table: TokenTable):
        ids = torch.as_tensor(src_ids, dtype=torch.long)[None]
        self.keys = time_keys(ids, table)[0].tolist()
        self.last_pitch = last_pitch_index(ids, table)[0].tolist()
        self.n_slots, self.table = len(table.ids(K_POS)) + 1, table

    def indices(self, tokens: list[int]) -> list[int]:
        """Aligned source index of every token of a target prefix (``-1``: none)."""
        keys = time_keys(torch.as_tensor(tokens, dtype=torch.long)[None], self.table)[0]
        return [self._at(k) for k in keys.tolist()]

    def index(self, grammar: Grammar) -> int:
        """Aligned source index after the grammar's last consumed token (``-1``: none)."""
        return self._at(_key(grammar.bars, grammar.pos, self.n_slots))

    def _at(self, key: int) -> int:
        upto = bisect.bisect_right(self.keys, key) - 1
        return self.last_pitch[upto] if upto >= 0 else NONE
