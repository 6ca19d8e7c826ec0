"""Interpolated Witten-Bell n-gram model over token ids: the baseline the transformer must beat.

Counting is vectorised so that the whole corpus (millions of tokens, order 8) fits in seconds and
a few hundred MB: every m-gram gets an integer id, and the (m+1)-gram ending at position j is coded
as ``id of the m-gram ending at j-1 * vocab + token j``, so codes stay exact at any order. Grams
never cross the boundary between two sequences.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _flatten(seqs: Iterable[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """All sequences end to end, and each token's position inside its own sequence."""
    arrays = [np.asarray(s, dtype=np.int64) for s in seqs]
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lengths = [len(a) for a in arrays]
    starts = np.repeat(np.cumsum([0, *lengths[:-1]]), lengths)
    return np.concatenate(arrays), np.arange(sum(lengths)) - starts


def _prev(ids: np.ndarray) -> np.ndarray:
    """``ids`` shifted one position right (the gram ending at j-1), -1 at the first position."""
    out = np.full_like(ids, -1)
    out[1:] = ids[:-1]
    return out


class NGram:
    """Witten-Bell interpolated n-gram with an add-one unigram floor.

    ``P_n(w | c) = (count(c, w) + T(c) * P_{n-1}(w | c')) / (N(c) + T(c))`` where ``N(c)`` counts
    the tokens seen after the context ``c``, ``T(c)`` the distinct ones, and ``c'`` drops the
    oldest token; the recursion stops at the first context never seen.

    Args:
        order: the longest context + 1 (order 1 = unigram).
        vocab_size: number of token ids (for the floor).
    """

    def __init__(self, order: int, vocab_size: int):
        self.order, self.vocab_size = order, vocab_size
        self.codes: list[np.ndarray] = []  # [m-1]: sorted codes of the training m-grams
        self.joint: list[np.ndarray] = []  # [m-1]: times each m-gram ended at a predicted token
        self.seen: list[np.ndarray] = []  # [m-1]: tokens predicted right after each m-gram
        self.types: list[np.ndarray] = []  # [m-1]: distinct tokens predicted right after it
        self.total = 0  # predicted tokens: N of the empty context

    def fit(self, seqs: Iterable[list[int]]) -> NGram:
        """Counts every n-gram of every sequence (each already opened by BOS)."""
        tokens, pos = _flatten(seqs)
        predicted = pos >= 1
        self.total = int(predicted.sum())
        ids = np.zeros_like(tokens)
        for m in range(1, self.order + 1):
            prefix = _prev(ids) if m > 1 else np.zeros_like(tokens)
            valid = pos >= m - 1
            uniq, inverse = np.unique((prefix * self.vocab_size + tokens)[valid],
                                      return_inverse=True)
            ids = np.full_like(tokens, -1)
            ids[valid] = inverse
            joint = np.bincount(ids[valid & predicted], minlength=len(uniq))
            if m > 1:  # a code's quotient is its prefix's id: count each prefix's continuations
                self.types[m - 2] = np.bincount(uniq[joint > 0] // self.vocab_size,
                                                minlength=len(self.codes[m - 2]))
            after = _prev(ids)  # the m-gram just before each token, as that token's context
            self.codes.append(uniq)
            self.joint.append(joint)
            self.seen.append(np.bincount(after[predicted & (after >= 0)], minlength=len(uniq)))
            self.types.append(np.zeros(len(uniq), np.int64))
        return self

    def _ids(self, tokens: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        """For every m, the id of the training m-gram ending at each position (-1: unseen)."""
        out, ids = [], np.zeros_like(tokens)
        for m in range(1, self.order + 1):
            prefix = _prev(ids) if m > 1 else np.zeros_like(tokens)
            code = prefix * self.vocab_size + tokens
            uniq = self.codes[m - 1]
            if len(uniq):
                at = np.minimum(np.searchsorted(uniq, code), len(uniq) - 1)
                ids = np.where((pos >= m - 1) & (prefix >= 0) & (uniq[at] == code), at, -1)
            else:
                ids = np.full_like(tokens, -1)
            out.append(ids)
        return out

    def nll_by_order(self, seqs: Iterable[list[int]]) -> np.ndarray:
        """Summed NLL (nats) of every ``seq[1:]`` under each order 1..``order``.

        Returns:
            (order,) float array; entry ``o - 1`` is the total at order ``o``.
        """
        tokens, pos = _flatten(seqs)
        ids = self._ids(tokens, pos)
        pred = pos >= 1
        tok = tokens[pred]
        unigram = np.zeros(self.vocab_size, np.int64)
        unigram[self.codes[0]] = self.joint[0]
        p = (unigram[tok] + 1.0) / (self.total + self.vocab_size)
        totals = [-np.log(p).sum()]
        going = np.ones(len(tok), bool)  # the recursion stops at the first unseen context
        for n in range(1, self.order):
            ctx = _prev(ids[n - 1])[pred]
            going &= ctx >= 0
            seen = np.where(going, self.seen[n - 1][np.maximum(ctx, 0)], 0)
            going &= seen > 0
            types = np.where(going, self.types[n - 1][np.maximum(ctx, 0)], 0)
            gram = ids[n][pred]
            joint = np.where(going & (gram >= 0), self.joint[n][np.maximum(gram, 0)], 0)
            p = np.where(going, (joint + types * p) / np.maximum(seen + types, 1), p)
            totals.append(-np.log(p).sum())
        return np.array(totals, dtype=np.float64)

    def nll(self, seq: list[int], order: int | None = None) -> tuple[float, int]:
        """Summed NLL (nats) of ``seq[1:]`` given its prefix, and the number of predicted tokens."""
        order = min(order or self.order, self.order)
        return float(self.nll_by_order([seq])[order - 1]), max(len(seq) - 1, 0)
