"""One window out of several samples (``SampleConfig.candidates``): the consensus choice.

A single sample commits to whatever chord it drew first, and the model's own likelihood did
not rank samples well (best of 4 by likelihood: Jaccard 0.278 -> 0.252 on val, stage 1).
Agreement does: the chosen candidate is the one whose per-beat pitch-class sets overlap most
with the other candidates' (mean Jaccard with each of them as the reference: the
minimum-Bayes-risk choice for that score under the model's own distribution), plus
``consonance`` times its share of source beats where source and candidate together form one
chord (:data:`symbolic.metrics.CONSONANT`). Nothing here looks at a reference: only at the
samples and the source the user gave. Beats are quarter notes, as in ``symbolic eval`` (off the
felt beat in 6/8). With two candidates and no consonance weight the agreement is symmetric and
the first is kept: use three or more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from symbolic import metrics as M

__all__ = ["consensus_scores", "choose"]


def consensus_scores(candidates: Sequence[Sequence[frozenset[int]]],
                     source: Sequence[frozenset[int]], consonance: float) -> np.ndarray:
    """Score of every candidate: agreement with the others + ``consonance`` x consonant share.

    Agreement of candidate ``i`` is its Jaccard against each other candidate ``j`` taken as the
    reference, as ``symbolic eval`` scores against Bach: over the beats where ``j`` sounds,
    averaged over the ``j`` that sound at all.

    Args:
        candidates: per candidate, its pitch-class set at each beat (all as long as ``source``).
        source: the source's pitch-class set at each beat.
        consonance: weight of the share of beats where the source sounds and source + candidate
            form one triad or dominant seventh (0: agreement only).

    Returns:
        (K,) float scores; with one candidate only its consonance term.
    """
    n = len(source)
    if any(len(c) != n for c in candidates):
        raise ValueError("every candidate needs one set per source beat")
    agree = np.array([_agreement(i, candidates) for i in range(len(candidates))])
    heard = [t for t, s in enumerate(source) if s]
    cons = np.array([np.mean([M.is_consonant(c[t] | source[t]) for t in heard]) if heard else 0.0
                     for c in candidates])
    return agree + consonance * cons


def _agreement(i: int, candidates: Sequence[Sequence[frozenset[int]]]) -> float:
    """Mean Jaccard of candidate ``i`` against every other one as the reference (0: none)."""
    scores = []
    for j, ref in enumerate(candidates):
        beats = [t for t, r in enumerate(ref) if r]
        if j != i and beats:
            scores.append(np.mean([M.jaccard(candidates[i][t], ref[t]) for t in beats]))
    return float(np.mean(scores)) if scores else 0.0


def choose(candidates: Sequence[Sequence[frozenset[int]]], source: Sequence[frozenset[int]],
           consonance: float, extra: Sequence[float] | None = None) -> int:
    """Index of the best-scoring candidate (:func:`consensus_scores`, plus ``extra[i]`` for
    candidate ``i`` when given, e.g. the chord tagger's judgement; ties: the first)."""
    scores = consensus_scores(candidates, source, consonance)
    return int(np.argmax(scores if extra is None else scores + np.asarray(extra)))
