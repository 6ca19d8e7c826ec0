"""The vectorised n-gram equals a plain dictionary Witten-Bell model, order by order."""

import math
from collections import defaultdict

import numpy as np
import pytest

from symbolic.ngram import NGram


def reference_nll(train: list[list[int]], test: list[list[int]], order: int, vocab: int) -> float:
    """Witten-Bell with an add-one unigram floor, counted in dicts, one token at a time."""
    joint, seen, types = defaultdict(int), defaultdict(int), defaultdict(int)
    for seq in map(tuple, train):
        for i in range(1, len(seq)):
            for n in range(min(order, i + 1)):
                ctx = seq[i - n:i]
                if ctx + (seq[i],) not in joint:
                    types[ctx] += 1
                joint[ctx + (seq[i],)] += 1
                seen[ctx] += 1
    total = 0.0
    for seq in map(tuple, test):
        for i in range(1, len(seq)):
            context, token = seq[max(0, i - order + 1):i], seq[i]
            p = (joint.get((token,), 0) + 1) / (seen.get((), 0) + vocab)
            for n in range(1, min(order, len(context) + 1)):
                ctx = context[len(context) - n:]
                if not seen.get(ctx, 0):
                    break
                p = (joint.get(ctx + (token,), 0) + types[ctx] * p) / (seen[ctx] + types[ctx])
            total -= math.log(p)
    return total


def _seqs(rng: np.random.Generator, count: int, vocab: int) -> list[list[int]]:
    # a small alphabet with repeated motifs, so long contexts recur and are also missed
    motifs = [list(rng.integers(1, vocab, 5)) for _ in range(3)]
    out = []
    for _ in range(count):
        seq = [0]
        while len(seq) < rng.integers(2, 40):
            seq += motifs[rng.integers(3)] if rng.random() < 0.5 else [int(rng.integers(1, vocab))]
        out.append(seq)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_every_order_equals_the_dictionary_model(seed):
    rng = np.random.default_rng(seed)
    vocab = 9
    train, test = _seqs(rng, 60, vocab), _seqs(rng, 20, vocab) + [[0], [0, 3]]
    model = NGram(6, vocab).fit(train)
    totals = model.nll_by_order(test)
    for order in range(1, 7):
        assert totals[order - 1] == pytest.approx(reference_nll(train, test, order, vocab),
                                                  rel=1e-9)


def test_grams_do_not_cross_sequence_boundaries():
    # trained only on [0 1 2] and [0 3 4]: "2 then 0 3" never happened inside one sequence
    model = NGram(3, 5).fit([[0, 1, 2], [0, 3, 4]])
    assert model.nll([0, 3, 4], 3)[0] < model.nll([0, 2, 3, 4], 3)[0]
    assert model.nll([0, 1, 2], 3)[0] == pytest.approx(reference_nll(
        [[0, 1, 2], [0, 3, 4]], [[0, 1, 2]], 3, 5))
    assert model.nll([0, 1, 2], 3)[1] == 2
