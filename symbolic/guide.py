"""The chord tagger's view of one melody, steering the transformer while it harmonises.

Two uses, each with its weight in :class:`symbolic.sample.SampleConfig`:

- ``chord_guide`` (bias): where the decoder may write a Pitch on a beat, every pitch gets
  ``chord_guide * log(P(its pitch class sounds in the lower voices on that beat) + 0.02)`` added
  to its logit (:meth:`ChordGuide.bias`). The model still chooses voicing, register, rhythm and
  the notes off the beat; the tagger, which has read the whole melody, says which chord tones
  are likely. Off the beat nothing is added: passing notes stay the model's.
- ``chord_judge`` (choice): the consensus of candidate windows (:mod:`symbolic.consensus`) adds
  ``chord_judge`` times each candidate's expected Jaccard against the tagger's distribution over
  the lower voices' sets (:meth:`ChordGuide.judge`).

The weight acts before the pitch temperature, so its strength is ``chord_guide / pitch_temp``
(the defaults were chosen at 0.3). It moves probability among pitches and, a little, from
pitches to the other tokens allowed at that step (another Position, a Bar).

Times: the tagger works on quarter-note beats from the melody's tick 0, whatever the meter (in
6/8 the third eighth is such a beat, the dotted-quarter beat is not), as it was trained; a
window's token (bar, position) becomes a tick through the source's bar lines and each bar's
positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic

from symbolic import metrics as M
from symbolic.grammar import Grammar
from symbolic.tagger import TaggerModel, beat_features
from symbolic.tokens import K_DUR, K_PITCH, K_POS, K_TEMPO, K_TIMESIG, TokenTable

FLOOR = 0.02  # probability floor inside the log: a pitch class the tagger rules out costs
# chord_guide * log(0.02) = -3.9 * chord_guide, not -inf
_NEXT_MAY_BE_PITCH = (K_POS, K_DUR, K_TEMPO)


@dataclass
class ChordGuide:
    """Per-beat tagger posteriors of one melody and the time map of its bars.

    Attributes:
        log_marg: (N, 12) log(P(pitch class sounds in the lower voices at beat) + FLOOR).
        probs: (N, V) distribution over the set vocabulary ``sets`` per beat.
        sets: the tagger's sets, in the melody's key.
        bar_ticks: start tick of every source bar, then the end of the last.
        bar_len: positions of every source bar (its TimeSig).
        beat: ticks per quarter note.
        pitch_pc: (V_tokens,) pitch class of each Pitch token, -1 for other tokens.
        weight: the bias weight (``chord_guide``).
    """

    log_marg: np.ndarray
    probs: np.ndarray
    sets: list[frozenset[int]]
    bar_ticks: list[int]
    bar_len: list[int]
    beat: int
    pitch_pc: np.ndarray
    weight: float

    @classmethod
    def build(cls, tagger: TaggerModel, mel_score: symusic.Score, src_ids: list[int],
              table: TokenTable, weight: float) -> ChordGuide:
        """The guide for a source melody (its decoded score and its token ids)."""
        beats = beat_features(mel_score)
        probs, marg = tagger.posterior(beats)
        bar_len = [int(table.value[t]) for t in src_ids if table.kind[t] == K_TIMESIG]
        beat = mel_score.ticks_per_quarter
        sigs = sorted(mel_score.time_signatures, key=lambda s: s.time)
        ticks = [0]
        for _ in bar_len:  # bar lengths from the score's meters, as the tokenizer cut the bars
            ticks.append(ticks[-1] + M.meter_at(sigs, ticks[-1], beat)[3])
        pitch_pc = np.where(table.kind == K_PITCH, table.value % 12, -1)
        return cls(np.log(marg + FLOOR), probs, tagger.sets_in_key(beats.tonic), ticks,
                   bar_len, beat, pitch_pc, weight)

    def tick(self, bar: int, pos: int) -> int | None:
        """Tick of position ``pos`` in source bar ``bar`` (None past the source's bars)."""
        if not 0 <= bar < len(self.bar_len):
            return None
        span = self.bar_ticks[bar + 1] - self.bar_ticks[bar]
        return self.bar_ticks[bar] + pos * span // max(1, self.bar_len[bar])

    def bias(self, g: Grammar, first_bar: int) -> np.ndarray | None:
        """Additive logits (V_tokens,) for the next token of a decoder row, or None.

        Args:
            g: the row's grammar after its tokens so far (its bars count from the window's).
            first_bar: source bar the window's first bar is.

        Returns:
            The pitch bias when the next token may be a Pitch starting on a beat the tagger
            covers; None elsewhere (no change).
        """
        if self.weight == 0 or g.last not in _NEXT_MAY_BE_PITCH or g.pos < 0 or g.bars < 1:
            return None
        t = self.tick(first_bar + g.bars - 1, g.pos)
        if t is None or t % self.beat or t // self.beat >= len(self.log_marg):
            return None
        row = self.log_marg[t // self.beat]
        return np.where(self.pitch_pc >= 0, self.weight * row[self.pitch_pc], 0.0)

    def judge(self, notes: list, start_tick: int, end_tick: int) -> float:
        """Expected Jaccard of a candidate's notes against the tagger's distribution.

        Args:
            notes: the candidate's notes, their ticks counted from ``start_tick``.
            start_tick, end_tick: where the candidate's bars start and end in the source.

        Returns:
            The mean over the tagger's beats in [start_tick, end_tick) of the expected Jaccard
            of the pitch classes sounding there (a silent beat scores 0, as in eval); 0 when
            no beat falls there. Beats are the tagger's (quarter notes from the melody's tick
            0), so a window starting half a beat in (odd bars of 3/8) is judged on them too.
        """
        first = -(-start_tick // self.beat)
        beats = range(first, min(len(self.probs), -(-end_tick // self.beat)))
        scores = []
        for b in beats:
            now = frozenset(n.pitch % 12 for n in M.sounding(notes, b * self.beat - start_tick))
            p = self.probs[b]
            top = np.nonzero(p > 1e-4)[0]
            scores.append(sum(float(p[i]) * M.jaccard(now, self.sets[i]) for i in top)
                          if now else 0.0)
        return float(np.mean(scores)) if scores else 0.0
