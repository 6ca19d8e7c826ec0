"""Tokenizer round trip, transposition, bar/beat positions, and the grammar on real data."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from symbolic.grammar import Grammar, check_sequence
from symbolic.tokens import (
    K_BAR,
    K_PITCH,
    decode,
    encode,
    merge_tracks,
    position_ids,
    transpose,
)


def _notes(score) -> list[tuple[Fraction, int, Fraction]]:
    """(onset, pitch, duration) in quarter notes, so resolutions can differ."""
    q = score.ticks_per_quarter
    return sorted((Fraction(n.time, q), n.pitch, Fraction(n.duration, q))
                  for t in score.tracks for n in t.notes)


def test_round_trip_keeps_every_note(tokenizer, chorale_paths):
    import symusic

    for path in chorale_paths:
        score = symusic.Score(str(path))
        # The tokenizer's resolution: its own preprocessing quantises onsets and durations.
        expected = tokenizer.preprocess_score(merge_tracks(score))
        decoded = decode(tokenizer, encode(tokenizer, score))
        assert _notes(decoded) == _notes(expected)
        assert len(_notes(decoded)) == score.note_num()  # no note lost (no exact duplicates here)


def test_token_transpose_equals_midi_transpose(tokenizer, table, chorale):
    ids = np.asarray(encode(tokenizer, chorale))
    shifted = chorale.shift_pitch(3)
    assert transpose(ids, 3, table).tolist() == encode(tokenizer, shifted)
    assert transpose(ids, 60, table) is None  # out of range is refused, not wrapped


def test_position_ids_match_grammar_state(tokenizer, table, chorale):
    ids = encode(tokenizer, chorale)[:300]
    n_pos = len(table.ids(3))
    pos, bar = position_ids(torch.tensor([ids]), table, n_pos)
    g = Grammar(table)
    for i, tok in enumerate(ids):
        g.consume(tok)
        assert g.embed_ids(n_pos) == (int(pos[0, i]), int(bar[0, i]))


def test_grammar_accepts_real_and_rejects_broken(tokenizer, table, chorale):
    ids = encode(tokenizer, chorale)
    check_sequence([table.id("BOS_None"), *ids, table.id("EOS_None")], table)
    first_pitch = next(i for i, t in enumerate(ids) if table.kind[t] == K_PITCH)
    broken = ids[:first_pitch + 1] + ids[first_pitch + 2:]  # drop a Velocity
    with pytest.raises(ValueError):
        check_sequence(broken, table)
    bar = int(table.ids(K_BAR)[0])
    with pytest.raises(ValueError):
        check_sequence([bar, ids[first_pitch]], table)  # Pitch right after Bar
