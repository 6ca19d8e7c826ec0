"""Training the chord tagger (:mod:`symbolic.tagger`) on harmonised pieces, and its harmoniser.

``python -m symbolic tagger --data corpus -o symbolic/pretrained/tagger.pt`` fits it on the
training chorales of the corpus cache (the pieces the HMM is fitted on), picks the epoch by the
expected Jaccard on the validation chorales, and writes plain types atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from miditok import REMI

from plumbing.atomic import atomic_torch_save
from plumbing.errors import UserError
from symbolic import metrics as M
from symbolic.data import Piece, load_pieces
from symbolic.tagger import (
    TaggerModel,
    beat_features,
    beat_targets,
    model_of,
    set_vocabulary,
    state_of,
)
from symbolic.tokens import decode

IGNORE = -100


@dataclass
class Example:
    """One piece for the tagger: features (N, F), key-relative target sets and basses."""

    features: np.ndarray
    sets: list[frozenset[int]]
    basses: list[int]


def examples(pieces: Sequence[Piece], tokenizer: REMI) -> list[Example]:
    """Features and targets of every piece with a melody and lower voices."""
    out = []
    for p in pieces:
        mel = decode(tokenizer, p.melody.tolist())
        har = M.all_notes(decode(tokenizer, p.harmony.tolist()))
        notes = M.all_notes(mel)
        if not notes or not har:
            continue
        beats = beat_features(mel)  # the melody's beats, as at inference
        sets, basses = beat_targets(har, len(beats.features), beats.beat, beats.tonic)
        out.append(Example(beats.features, sets, basses))
    return out


def _batch(exs: Sequence[Example], index: dict[tuple[int, ...], int]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded features (B, N, F), set targets (B, N) and bass targets (B, N)."""
    n = max(len(e.features) for e in exs)
    x = torch.zeros(len(exs), n, exs[0].features.shape[1])
    ys = torch.full((len(exs), n), IGNORE, dtype=torch.long)
    yb = torch.full((len(exs), n), IGNORE, dtype=torch.long)
    for i, e in enumerate(exs):
        x[i, : len(e.features)] = torch.from_numpy(e.features)
        ys[i, : len(e.sets)] = torch.tensor([index.get(tuple(sorted(s)), IGNORE) for s in e.sets])
        yb[i, : len(e.basses)] = torch.tensor([b if b >= 0 else IGNORE for b in e.basses])
    return x, ys, yb


@torch.no_grad()
def expected_score(model: TaggerModel, exs: Sequence[Example]) -> float:
    """Mean Jaccard of the minimum-Bayes-risk set (the highest expected Jaccard under the
    tagger) against the real set, over the beats where the real lower voices sound."""
    sets = [frozenset(s) for s in model.sets]
    scores = []
    for e in exs:
        best, _ = model.mbr(e.features)
        scores += [M.jaccard(sets[b], r) for b, r in zip(best, e.sets, strict=True) if r]
    return float(np.mean(scores)) if scores else 0.0


def fit(train: Sequence[Example], val: Sequence[Example], epochs: int = 60, batch: int = 16,
        lr: float = 2e-3, seed: int = 0, hidden: int = 128, log: bool = True) -> TaggerModel:
    """Trains with Adam on set + 0.5 x bass cross-entropy; keeps the epoch whose minimum-Bayes-
    risk sets score best on ``val`` (their Jaccard against the real sets, :func:`expected_score`).

    Raises:
        UserError: no training example.
    """
    if not train:
        raise UserError("the tagger needs pieces with a melody and lower voices to train on")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vocab = set_vocabulary([s for e in train for s in e.sets])
    model = TaggerModel(vocab, hidden=hidden)
    index = {s: i for i, s in enumerate(model.sets)}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train))
        for k in range(0, len(order), batch):
            x, ys, yb = _batch([train[i] for i in order[k: k + batch]], index)
            s_logits, b_logits = model(x)
            loss = (F.cross_entropy(s_logits.flatten(0, 1), ys.flatten(), ignore_index=IGNORE)
                    + 0.5 * F.cross_entropy(b_logits.flatten(0, 1), yb.flatten(),
                                            ignore_index=IGNORE))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        score = expected_score(model, val or train)
        if score > best:
            best, best_state = score, state_of(model)
        if log:
            print(f"epoch {epoch + 1} loss {loss.item():.3f} val jaccard {score:.3f}", flush=True)
    return model_of(best_state)


def save(model: TaggerModel, path: str | Path, meta: dict) -> None:
    """Writes the tagger as plain types, atomically."""
    atomic_torch_save({**state_of(model), "meta": meta}, path)


def train_tagger(train: Sequence[Piece], val: Sequence[Piece], tokenizer: REMI, out: str | Path,
                 epochs: int = 60, seed: int = 0) -> tuple[TaggerModel, dict]:
    """Fits on ``train``, chooses the epoch on ``val``, writes ``out``; returns the model and
    the metadata written with it (``val_jaccard``: :func:`expected_score` on ``val``)."""
    start = time.time()
    tr, va = examples(train, tokenizer), examples(val, tokenizer)
    model = fit(tr, va, epochs=epochs, seed=seed)
    meta = {"train_pieces": len(tr), "val_pieces": len(va), "epochs": epochs, "seed": seed,
            "val_jaccard": round(expected_score(model, va), 4),
            "seconds": round(time.time() - start, 1)}
    save(model, out, meta)
    return model, meta


def train_on(data: str, cache_dir: str, out: str | Path, epochs: int = 60, seed: int = 0) -> str:
    """``python -m symbolic tagger``: trains on the training split's harmonised pieces (in the
    corpus, its Bach chorales), chooses the epoch on the validation split; returns a summary.

    Raises:
        UserError: bad data, fewer than one epoch, an output folder that does not exist.
    """
    from symbolic.evaluate import data_config, harmony_pieces
    from symbolic.tokens import build_tokenizer

    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    if not Path(out).resolve().parent.is_dir():
        raise UserError(f"no folder for the output: {Path(out).parent}")
    tokenizer = build_tokenizer()
    splits = load_pieces(data_config(data, cache_dir), tokenizer)
    train, val = (harmony_pieces(splits[s], data) for s in ("train", "val"))
    model, meta = train_tagger(train, val, tokenizer, out, epochs, seed)
    return (f"wrote {out}: {len(model.sets)} sets, trained on {len(train)} pieces, "
            f"val Jaccard of its sets {meta['val_jaccard']:.3f}")
