"""REMI tokenizer (miditok on symusic), the token grammar, and token-level helpers.

The grammar mirrors what miditok's REMI writes with time signatures on:
``Bar TimeSig (Position [Tempo] (Pitch Velocity Duration)+)* ...``. Sampling masks every token that
would break this order, so any sampled sequence decodes to MIDI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import symusic
import torch
from miditok import REMI, TokenizerConfig

from symbolic.midi_io import one_track

SPECIAL = ["PAD", "BOS", "EOS", "MASK", "ToHarmony", "ToMelody"]
# Token kinds; the ids index the rows of ``TokenTable.kind``.
KINDS = ["special", "bar", "timesig", "position", "tempo", "pitch", "velocity", "duration"]
K_SPECIAL, K_BAR, K_TIMESIG, K_POS, K_TEMPO, K_PITCH, K_VEL, K_DUR = range(len(KINDS))
# States of the grammar automaton: what the last emitted token was.
S_START, S_BAR, S_TIMESIG, S_POS, S_TEMPO, S_PITCH, S_VEL, S_DUR, S_END = range(9)


def build_tokenizer() -> REMI:
    """Builds the REMI tokenizer used everywhere (8 positions per beat up to 4 beats)."""
    cfg = TokenizerConfig(
        pitch_range=(21, 109),
        beat_res={(0, 4): 8, (4, 12): 4},
        num_velocities=4,
        use_velocities=True,
        use_tempos=True,
        num_tempos=8,
        tempo_range=(40, 250),
        use_time_signatures=True,
        time_signature_range={4: [2, 3, 4, 5, 6], 8: [3, 6, 9, 12]},
        use_programs=False,
        special_tokens=SPECIAL,
    )
    return REMI(cfg)


@dataclass
class TokenTable:
    """Per-token lookup tables derived from the tokenizer vocabulary.

    Attributes:
        kind: (V,) token kind index (see ``KINDS``).
        value: (V,) numeric value: position index, pitch, bar length in positions for TimeSig.
        vocab: token string -> id.
    """

    kind: np.ndarray
    value: np.ndarray
    vocab: dict[str, int]

    @property
    def size(self) -> int:
        return len(self.kind)

    def ids(self, kind: int) -> np.ndarray:
        return np.nonzero(self.kind == kind)[0]

    def id(self, name: str) -> int:
        return self.vocab[name]


def token_table(tokenizer: REMI) -> TokenTable:
    """Classifies every vocabulary entry by kind and parses its value."""
    vocab = dict(tokenizer.vocab)
    kind = np.zeros(len(vocab), dtype=np.int64)
    value = np.zeros(len(vocab), dtype=np.int64)
    ticks_per_beat = max(tokenizer.config.beat_res.values())
    names = {"Bar": K_BAR, "TimeSig": K_TIMESIG, "Position": K_POS, "Tempo": K_TEMPO,
             "Pitch": K_PITCH, "Velocity": K_VEL, "Duration": K_DUR}
    for tok, i in vocab.items():
        head, _, val = tok.partition("_")
        kind[i] = names.get(head, K_SPECIAL)
        if head in ("Position", "Pitch"):
            value[i] = int(val)
        elif head == "TimeSig":
            num = int(val.split("/")[0])
            # miditok counts positions per beat of the denominator's note value
            value[i] = num * ticks_per_beat  # bar length in positions
    return TokenTable(kind=kind, value=value, vocab=vocab)


def bar_and_position(ids: torch.Tensor, table: TokenTable) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every token sits in time.

    Args:
        ids: (B, T) token ids.
        table: token table.

    Returns:
        bars: (B, T) number of Bar tokens seen so far (this one included).
        pos: (B, T) value of the last Position token since the last Bar, ``-1`` for none yet.
    """
    kind = torch.as_tensor(table.kind, device=ids.device)[ids]
    value = torch.as_tensor(table.value, device=ids.device)[ids]
    is_bar = kind == K_BAR
    bars = torch.cumsum(is_bar.long(), dim=1)
    # Last Position value since the last Bar: carry forward with a cummax over marked indices.
    t = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last_pos_at = torch.cummax(torch.where(kind == K_POS, t, -1), dim=1).values
    last_bar_at = torch.cummax(torch.where(is_bar, t, -1), dim=1).values
    pos_val = torch.gather(value, 1, last_pos_at.clamp(min=0))
    return bars, torch.where(last_pos_at > last_bar_at, pos_val, torch.full_like(pos_val, -1))


def position_ids(ids: torch.Tensor, table: TokenTable, n_pos: int,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bar/beat positions of every token, for the position embeddings.

    Args:
        ids: (B, T) token ids.
        table: token table.
        n_pos: number of Position tokens; slot ``n_pos`` means "before any Position in this bar".

    Returns:
        pos: (B, T) current position-in-bar index in [0, n_pos].
        bar: (B, T) number of Bar tokens seen so far, modulo 4 (phrase position).
    """
    bars, pos = bar_and_position(ids, table)
    return torch.where(pos < 0, n_pos, pos).clamp(max=n_pos), bars % 4


def merge_tracks(score: symusic.Score, tracks: list[int] | None = None) -> symusic.Score:
    """A copy of ``score`` with the chosen (default: all non-drum) tracks merged into one."""
    out = symusic.Score(score.ticks_per_quarter)
    out.time_signatures = score.time_signatures.copy()
    out.tempos = score.tempos.copy()
    merged = symusic.Track("merged")
    chosen = tracks if tracks is not None else range(len(score.tracks))
    for i in chosen:
        if not score.tracks[i].is_drum:
            merged.notes.extend(score.tracks[i].notes)
    merged.notes.sort(key=lambda n: (n.time, n.pitch))
    out.tracks.append(merged)
    return out


def skyline(score: symusic.Score) -> tuple[list, list]:
    """Splits all notes into the top line (highest note at each onset) and the rest."""
    notes = sorted((n for t in score.tracks if not t.is_drum for n in t.notes),
                   key=lambda n: (n.time, -n.pitch))
    top, rest, last_time = [], [], None
    for n in notes:
        (top if n.time != last_time else rest).append(n)
        last_time = n.time
    return top, rest


def split_voices(score: symusic.Score) -> tuple[symusic.Score, symusic.Score]:
    """Melody score and harmony score of a piece: with two or more non-empty tracks the first is
    the melody and the others the harmony (the chorales are written soprano first); a one-track
    piece is split by its :func:`skyline`."""
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes) > 0]
    if len(tracks) >= 2:
        melody = list(tracks[0].notes)
        harmony = [n for t in tracks[1:] for n in t.notes]
    else:
        melody, harmony = skyline(score)
    return one_track(score, melody), one_track(score, harmony)


def encode(tokenizer: REMI, score: symusic.Score) -> list[int]:
    """Encodes a score (all tracks merged into one stream) to token ids (no BOS/EOS)."""
    seqs = tokenizer.encode(merge_tracks(score))
    seq = seqs[0] if isinstance(seqs, list) else seqs
    return list(seq.ids)


def decode(tokenizer: REMI, ids: list[int], name: str = "generated") -> symusic.Score:
    """Decodes token ids (special tokens dropped) to a one-track score."""
    table = token_table(tokenizer)
    clean = [int(i) for i in ids if table.kind[int(i)] != K_SPECIAL]
    score = tokenizer.decode([clean])
    if score.tracks:
        score.tracks[0].name = name
    return score


def transpose(ids: np.ndarray, shift: int, table: TokenTable) -> np.ndarray | None:
    """Shifts every Pitch token by ``shift`` semitones; None if a pitch leaves the range."""
    if shift == 0:
        return ids
    pitch_ids = table.ids(K_PITCH)
    lo, hi = table.value[pitch_ids].min(), table.value[pitch_ids].max()
    is_pitch = table.kind[ids] == K_PITCH
    new_pitch = table.value[ids[is_pitch]] + shift
    if new_pitch.size and (new_pitch.min() < lo or new_pitch.max() > hi):
        return None
    out = ids.copy()
    out[is_pitch] = pitch_ids[new_pitch - lo]  # Pitch ids are contiguous and sorted by pitch
    return out


def bar_starts(ids: np.ndarray, table: TokenTable) -> np.ndarray:
    """Indices of the Bar tokens of a sequence."""
    return np.nonzero(table.kind[ids] == K_BAR)[0]
