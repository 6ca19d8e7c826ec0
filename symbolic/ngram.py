"""Interpolated Witten-Bell n-gram model over token ids: the baseline the transformer must beat."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable


class NGram:
    """Witten-Bell interpolated n-gram with an add-one unigram floor.

    Counts live in flat dicts keyed by tuples (lighter than a Counter per context).

    Args:
        order: the longest context + 1 (order 1 = unigram).
        vocab_size: number of token ids (for the floor).
    """

    def __init__(self, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.joint: dict[tuple, int] = defaultdict(int)  # context + (token,) -> count
        self.seen: dict[tuple, int] = defaultdict(int)  # context -> tokens after it
        self.types: dict[tuple, int] = defaultdict(int)  # context -> distinct tokens after it

    def fit(self, seqs: Iterable[list[int]]) -> NGram:
        """Counts every n-gram of every sequence (each already opened by BOS)."""
        for seq in seqs:
            seq = tuple(seq)
            for i in range(1, len(seq)):
                for n in range(min(self.order, i + 1)):
                    ctx = seq[i - n:i]
                    key = ctx + (seq[i],)
                    if key not in self.joint:
                        self.types[ctx] += 1
                    self.joint[key] += 1
                    self.seen[ctx] += 1
        return self

    def prob(self, context: tuple, token: int, order: int | None = None) -> float:
        """P(token | context), interpolated from the empty context up to ``order - 1`` tokens."""
        order = min(order or self.order, self.order)
        p = (self.joint.get((token,), 0) + 1) / (self.seen.get((), 0) + self.vocab_size)
        for n in range(1, min(order, len(context) + 1)):
            ctx = context[len(context) - n:]
            seen = self.seen.get(ctx, 0)
            if not seen:
                break
            types = self.types[ctx]
            p = (self.joint.get(ctx + (token,), 0) + types * p) / (seen + types)
        return p

    def nll(self, seq: list[int], order: int | None = None) -> tuple[float, int]:
        """Summed NLL (nats) of ``seq[1:]`` given its prefix, and the number of predicted tokens."""
        seq = tuple(seq)
        total = 0.0
        for i in range(1, len(seq)):
            total -= math.log(self.prob(seq[max(0, i - self.order + 1):i], seq[i], order))
        return total, len(seq) - 1
