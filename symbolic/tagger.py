"""A chord tagger: the whole melody in, the lower voices' pitch-class set of every beat out.

The transformer writes 4-bar windows and commits to a chord as it samples; the HMM sees one melody
note and the chord before. This model reads the whole melody at once (a bidirectional GRU over
quarter-note beats, as the chord metrics count them) and gives, per beat, a distribution over the
pitch-class sets that real lower voices sound there. Harmonising uses it twice
(:mod:`symbolic.api`): as a bias on the pitch tokens the decoder samples, and as a judge of the
candidate windows (the expected Jaccard of each candidate's sets under it).

- **Key-relative**: a piece is transposed so that the Krumhansl-Schmuckler key of its melody
  (:func:`symbolic.metrics.find_key`) has tonic C; the mode is an input. Sets are predicted in
  that frame and shifted back, so 264 chorales teach one key's harmony, not twelve.
- **Inputs per beat** (:func:`beat_features`, ``N_FEATURES``): the melody pitch class at the
  onset (or rest), every pitch class the melody starts inside the beat, the pitch height, whether
  a note starts on the beat, the beat's place in the bar, the mode, and the distance to the first
  and last beat.
- **Outputs**: a softmax over the sets seen at least twice in training (``TaggerModel.sets``;
  rarer sets are left out of the loss) and a 12-way softmax over the bass pitch class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch
from torch import Tensor, nn

from symbolic import metrics as M
from symbolic.hmm import bass_pitch, place_below, voice

REST = 12
N_FEATURES = 13 + 12 + 1 + 1 + 4 + 1 + 2
FORMAT = "symbolic-tagger-1"


@dataclass
class Beats:
    """One melody's beats: features (N, N_FEATURES), key tonic and mode, beat length in ticks."""

    features: np.ndarray
    tonic: int
    major: bool
    beat: int


def _bar_place(score: symusic.Score, t: int) -> int:
    """0 on a downbeat, 1 on the middle of a 4/4 bar, 2 on other beats, 3 off the beat grid."""
    num, den, t0, bar = M.meter_at(list(score.time_signatures), t, score.ticks_per_quarter)
    pos = (t - t0) % bar
    if pos == 0:
        return 0
    if num == 4 and den == 4 and 2 * pos == bar:
        return 1
    return 2 if pos % score.ticks_per_quarter == 0 else 3


def beat_features(mel_score: symusic.Score, n_beats: int | None = None) -> Beats:
    """Key-relative features of every beat of a melody (from tick 0 to its last note's end).

    Args:
        mel_score: the melody (all its notes count; the highest sounding one is "the" note).
        n_beats: beats to describe (default: up to the melody's end).

    Returns:
        :class:`Beats` with features (n_beats, N_FEATURES), float32.
    """
    notes, beat = M.all_notes(mel_score), mel_score.ticks_per_quarter
    end = max((n.end for n in notes), default=0)
    n = -(-end // beat) if n_beats is None else n_beats
    tonic, major = M.find_key(notes) or (0, True)
    f = np.zeros((n, N_FEATURES), dtype=np.float32)
    on = np.array([x.time for x in notes], dtype=np.int64)
    off = on + np.array([x.duration for x in notes], dtype=np.int64)
    pitch = np.array([x.pitch for x in notes], dtype=np.int64)
    rel = (pitch - tonic) % 12
    for i in range(n):  # numpy over the notes: long pieces stay linear in beats x notes / SIMD
        t = i * beat
        now = (on <= t) & (off > t)
        top = int(pitch[now].max()) if now.any() else None
        f[i, REST if top is None else (top - tonic) % 12] = 1
        f[i, 13 + rel[(on >= t) & (on < t + beat)]] = 1
        f[i, 25] = 0.0 if top is None else (top - 66) / 12
        f[i, 26] = bool((on[now] == t).any())
        f[i, 27 + _bar_place(mel_score, t)] = 1
    f[:, 31] = float(major)
    idx = np.arange(n, dtype=np.float32)
    f[:, 32] = 1 / (1 + idx)  # the first beats and the last ones: openings and cadences
    f[:, 33] = 1 / (1 + idx[::-1])
    return Beats(f, tonic, major, beat)


def beat_targets(harmony: list, n_beats: int, beat: int, tonic: int
                 ) -> tuple[list[frozenset[int]], list[int]]:
    """Key-relative lower-voice pitch-class set and bass pitch class (-1: silent) per beat."""
    sets, basses = [], []
    for i in range(n_beats):
        now = M.sounding(harmony, i * beat)
        sets.append(frozenset((x.pitch - tonic) % 12 for x in now))
        basses.append((min(x.pitch for x in now) - tonic) % 12 if now else -1)
    return sets, basses


def shift_set(pcs: frozenset[int], k: int) -> frozenset[int]:
    """A pitch-class set transposed by ``k`` semitones."""
    return frozenset((p + k) % 12 for p in pcs)


class TaggerModel(nn.Module):
    """Bidirectional GRU over beats with a set head and a bass head.

    Args:
        sets: the pitch-class sets the set head can name (key-relative), as sorted pc tuples.
        hidden: GRU width per direction.
        layers: GRU layers.
        dropout: between layers and before the heads.
    """

    def __init__(self, sets: Sequence[Sequence[int]], hidden: int = 128, layers: int = 2,
                 dropout: float = 0.3):
        super().__init__()
        self.sets = [tuple(sorted(s)) for s in sets]
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        self.inp = nn.Linear(N_FEATURES, hidden)
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True, bidirectional=True,
                          dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.set_head = nn.Linear(2 * hidden, len(self.sets))
        self.bass_head = nn.Linear(2 * hidden, 12)
        member = torch.zeros(len(self.sets), 12)
        for i, s in enumerate(self.sets):
            member[i, list(s)] = 1
        self.register_buffer("member", member, persistent=False)  # (V, 12) set -> its pcs
        inter = member @ member.T
        union = member.sum(1)[:, None] + member.sum(1)[None, :] - inter
        self.register_buffer("jaccard", inter / union.clamp(min=1), persistent=False)  # (V, V)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features (B, N, N_FEATURES) -> set logits (B, N, V) and bass logits (B, N, 12)."""
        h, _ = self.gru(torch.relu(self.inp(x)))
        h = self.drop(h)
        return self.set_head(h), self.bass_head(h)

    @torch.no_grad()
    def posterior(self, beats: Beats) -> tuple[np.ndarray, np.ndarray]:
        """Per beat, in the melody's own key: set probabilities (N, V) over ``self.sets``
        shifted to the key (see :meth:`sets_in_key`) and pitch-class marginals (N, 12): the
        probability that each pitch class sounds in the lower voices."""
        self.eval()
        logits, _ = self(torch.from_numpy(beats.features)[None])
        p = torch.softmax(logits[0].float(), -1)
        marg = (p @ self.member).numpy()  # key-relative pcs
        return p.numpy(), np.roll(marg, beats.tonic, axis=1)

    def sets_in_key(self, tonic: int) -> list[frozenset[int]]:
        """The set vocabulary transposed to a key with this tonic."""
        return [shift_set(frozenset(s), tonic) for s in self.sets]

    @torch.no_grad()
    def mbr(self, features: np.ndarray) -> tuple[list[int], Tensor]:
        """Per beat of (N, N_FEATURES) features: the index of the minimum-Bayes-risk set (the
        highest expected Jaccard under the posterior) and the bass probabilities (N, 12), both
        key-relative."""
        self.eval()
        logits, bass = self(torch.from_numpy(features)[None])
        best = (torch.softmax(logits[0].float(), -1) @ self.jaccard).argmax(-1).tolist()
        return best, torch.softmax(bass[0].float(), -1)

    def best_sets(self, beats: Beats) -> tuple[list[frozenset[int]], np.ndarray]:
        """The minimum-Bayes-risk set of every beat and the bass probabilities (N, 12), both in
        the melody's key."""
        best, bass = self.mbr(beats.features)
        sets = self.sets_in_key(beats.tonic)
        return [sets[i] for i in best], np.roll(bass.numpy(), beats.tonic, axis=1)


def set_vocabulary(all_sets: Sequence[frozenset[int]], min_count: int = 2
                   ) -> list[tuple[int, ...]]:
    """Non-empty sets seen at least ``min_count`` times, most frequent first."""
    counts = Counter(s for s in all_sets if s)
    return [tuple(sorted(s)) for s, c in counts.most_common() if c >= min_count]


def state_of(model: TaggerModel) -> dict:
    """The model as plain types (``torch.load(..., weights_only=True)``), fp16 weights."""
    return {"format": FORMAT, "sets": [list(s) for s in model.sets],
            "config": {"hidden": model.hidden, "layers": model.layers, "dropout": model.dropout},
            "model": {k: v.detach().to("cpu", torch.float16).clone()
                      for k, v in model.state_dict().items()}}  # fp16: half the file


def model_of(blob: dict) -> TaggerModel:
    """The eval-mode model of :func:`state_of`'s blob."""
    model = TaggerModel([tuple(s) for s in blob["sets"]], **blob["config"])
    model.load_state_dict({k: v.float() for k, v in blob["model"].items()})
    return model.eval()


def voice_set(chord: tuple[frozenset[int], int], melody: int | None) -> list[int]:
    """Lower-voice pitches (bass first) of a (pitch-class set, bass pc) under a melody pitch:
    the bass in G2..F#3, the set's other pitch classes (or the bass's, doubled) each at its
    highest pitch below the melody, kept only above the bass."""
    pcs, bass_pc = chord
    bass = bass_pitch(bass_pc)
    ref = melody if melody is not None else 72
    upper = sorted(pcs - {bass_pc}) or [bass_pc]
    placed = sorted((place_below(pc, ref) for pc in upper[:2]), reverse=True)
    return [bass, *(p for p in placed if p > bass)]


def chords_of(model: TaggerModel, mel_score: symusic.Score) -> list[tuple[frozenset[int], int]]:
    """(set, bass pc) per beat: the minimum-Bayes-risk set, its bass the most probable one of
    its pitch classes (every set of the vocabulary is non-empty)."""
    sets, bass_p = model.best_sets(beat_features(mel_score))
    return [(s, max(s, key=lambda pc, row=row: row[pc])) for s, row in zip(sets, bass_p,
                                                                             strict=True)]


def harmoniser(model: TaggerModel):
    """``f(index, piece, melody score) -> lower-voice notes``: the tagger's sets, voiced."""
    return lambda _i, _p, mel_score: voice(chords_of(model, mel_score), mel_score, voice_set)


def load(path: str | Path) -> TaggerModel:
    """Loads a tagger written by :func:`symbolic.tagger_train.save`.

    Raises:
        UserError: a missing file or one that is not a tagger.
    """
    from symbolic.checkpoint import read_tagged

    return model_of(read_tagged(path, FORMAT, "symbolic chord tagger"))
