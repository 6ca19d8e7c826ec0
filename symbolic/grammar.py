"""The REMI token grammar as a small automaton, used to mask invalid tokens while sampling."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symbolic.tokens import (
    K_BAR,
    K_DUR,
    K_PITCH,
    K_POS,
    K_SPECIAL,
    K_TEMPO,
    K_TIMESIG,
    K_VEL,
    TokenTable,
)

# Token kinds allowed after each kind; special tokens (BOS, task tokens) start a sequence.
NEXT = {
    K_SPECIAL: {K_BAR},
    K_BAR: {K_TIMESIG},
    K_TIMESIG: {K_POS, K_BAR},
    K_POS: {K_TEMPO, K_PITCH},
    K_TEMPO: {K_PITCH, K_POS, K_BAR},  # a tempo change may sit on a Position without notes
    K_PITCH: {K_VEL},
    K_VEL: {K_DUR},
    K_DUR: {K_PITCH, K_POS, K_BAR},
}
# After these kinds a sequence may end.
CAN_END = {K_TIMESIG, K_DUR, K_TEMPO}


@dataclass
class Grammar:
    """Tracks one sequence and says which tokens may come next.

    Attributes:
        table: token table of the tokenizer.
        max_bars: no Bar beyond this many (None: unlimited); EOS only once reached when ``exact``.
        exact: the sequence must hold exactly ``max_bars`` bars before it may end.
        timesigs: TimeSig token id to force in each bar (by bar index), e.g. the melody's meter.
        last: kind of the last token.
        pos: Position value of the current bar so far (-1: none yet).
        bar_len: positions in the current bar (from its TimeSig).
        bars: Bar tokens seen.
        closing: when True, only tokens that finish the current note, then end, are allowed.
    """

    table: TokenTable
    max_bars: int | None = None
    exact: bool = False
    timesigs: list[int] = field(default_factory=list)
    last: int = K_SPECIAL
    pos: int = -1
    bar_len: int = 32
    bars: int = 0
    closing: bool = False

    def __post_init__(self) -> None:
        # Kind masks per state, built once: np.isin at every sampled token was a hot spot.
        self._next = {k: np.isin(self.table.kind, list(v)) for k, v in NEXT.items()}
        self._pos_tok = self.table.kind == K_POS
        self._eos = self.table.vocab["EOS_None"]

    def consume(self, token: int) -> None:
        """Advances the state by ``token``; raises ValueError when the token breaks the grammar."""
        kind = int(self.table.kind[token])
        at_start = self.last == K_SPECIAL and self.bars == 0
        if kind == K_SPECIAL and token != self.table.vocab["EOS_None"] and at_start:
            return  # BOS or a task token opens the sequence
        if not self.allowed()[token]:
            raise ValueError(f"token {token} not allowed after kind {self.last}")
        if kind == K_SPECIAL:
            return
        if kind == K_BAR:
            self.bars += 1
            self.pos = -1
        elif kind == K_TIMESIG:
            self.bar_len = int(self.table.value[token])
        elif kind == K_POS:
            self.pos = int(self.table.value[token])
        self.last = kind

    def embed_ids(self, n_pos: int) -> tuple[int, int]:
        """(position-in-bar, bar mod 4) of the last consumed token, as ``position_ids`` computes."""
        return (self.pos if self.pos >= 0 else n_pos), self.bars % 4

    def allowed(self) -> np.ndarray:
        """(V,) bool mask of the tokens that may come next."""
        t = self.table
        ok = self._next[self.last].copy()
        if self.closing and self.last in CAN_END:
            # Out of budget: end now, or with empty bars when an exact bar count is promised.
            ok = (t.kind == K_BAR) if self.exact and self.max_bars is not None else ok & False
        bar_full = self.max_bars is not None and self.bars >= self.max_bars
        if bar_full:
            ok &= t.kind != K_BAR
        if self.last == K_BAR and len(self.timesigs) >= self.bars > 0:
            ok &= np.arange(t.size) == self.timesigs[self.bars - 1]
        if self.last in (K_TIMESIG, K_DUR, K_TEMPO):
            ok &= ~self._pos_tok | ((t.value > self.pos) & (t.value < self.bar_len))
        may_end = self.last in CAN_END and self.bars > 0 and (not self.exact or bar_full)
        ok[self._eos] = may_end
        if not ok.any() and self.last in CAN_END:
            ok[self._eos] = True  # e.g. the bar is full and no more bars are allowed
        return ok

    def done_kinds(self) -> bool:
        """True when the last token completes a note or a bar head (a clean cut point)."""
        return self.last in CAN_END


def check_sequence(ids: list[int], table: TokenTable) -> None:
    """Raises ValueError if ``ids`` (optionally opened by BOS/a task token) breaks the grammar."""
    g = Grammar(table)
    for tok in ids:
        g.consume(tok)

