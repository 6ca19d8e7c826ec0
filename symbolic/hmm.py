"""A classic harmoniser to beat: a first-order HMM with hidden chords and the melody visible.

After Allan and Williams (2005), "Harmonising chorales by probabilistic inference": one hidden
chord per melody beat (a quarter note), the melody's pitch class on that beat as the observation,
trained by counting on the training chorales and decoded with Viterbi in log space.

- **Chords** (48 states): a root pitch class times a quality, major, minor, dominant seventh or
  diminished (``state = quality * 12 + root``). A training beat's label comes from the pitch-class
  set S of the lower voices sounding at the beat onset (see :func:`chord_label`): every template
  T scores ``2|S & T| - |S - T| - |T - S|``; ties go to the template whose root is the bass, then
  to the quality order above, then to the lowest root. Every non-empty set gets a label, so no
  "other" state is needed; beats where the lower voices are silent are left out of training (as
  they are left out of the chord metrics).
- **Observations**: the pitch class of the melody note sounding at the beat onset, 12 when the
  melody rests; with ``meter=True`` (the default of :func:`fit_pieces` and :func:`harmoniser`)
  the symbol also says strong or weak beat (a downbeat, or the middle of a 4/4 bar, is strong):
  26 symbols. Picked on the 13 validation chorales: root accuracy 0.414 with it, 0.397 without.
- **Training**: counts of first chords, chord bigrams and (chord, melody) pairs, over all 12
  transpositions of every training piece (a shift of roots and melody pitch classes, so it costs
  counts only), add-k smoothed (k = 0.1; k from 0.1 to 5 gave the same validation numbers).
- **Voicing** (:func:`voice`): bass = the root in G2..F#3; two upper voices take the chord tones
  the melody leaves out (third, then fifth, then root; for a seventh chord third, seventh, fifth,
  root), in close position: each at the highest pitch below the melody, so both lie within the
  octave under it; a voice that would not stay above the bass is dropped (only under a melody
  below G4). Repeated pitches of a voice on consecutive beats are tied into one note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import symusic
from miditok import REMI

from symbolic import metrics as M
from symbolic.data import Piece
from symbolic.tokens import decode

NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# (suffix, intervals above the root, order in which the upper voices take the chord tones)
QUALITIES = (("", (0, 4, 7), (4, 7, 0)), ("m", (0, 3, 7), (3, 7, 0)),
             ("7", (0, 4, 7, 10), (4, 10, 7, 0)), ("dim", (0, 3, 6), (3, 6, 0)))
N_STATES = 12 * len(QUALITIES)
REST = 12  # observation symbol of a beat where the melody is silent
N_PCS = 13  # 12 pitch classes + REST
DEFAULT_K = 0.1  # add-k smoothing constant
BASS_LOW = 43  # G2: the bass is the root in [43, 54]
VELOCITY = 80
METER = True  # observations carry the beat strength (see above)
LABEL = "HMM (48 chords, Viterbi)"  # its row in the eval table


def chord_pcs(state: int) -> frozenset[int]:
    """Pitch classes of a chord state."""
    q, root = divmod(state, 12)
    return frozenset((root + i) % 12 for i in QUALITIES[q][1])


def chord_name(state: int) -> str:
    """Readable name of a chord state, e.g. ``G7`` or ``F#m``."""
    q, root = divmod(state, 12)
    return NAMES[root] + QUALITIES[q][0]


TEMPLATES = [chord_pcs(s) for s in range(N_STATES)]


def chord_label(pcs: frozenset[int] | set[int], bass: int | None = None) -> int:
    """Best-matching chord state of a non-empty pitch-class set (rule in the module docstring).

    Raises:
        ValueError: for an empty set.
    """
    if not pcs:
        raise ValueError("an empty pitch-class set has no chord")
    pcs = frozenset(pcs)

    def key(s: int) -> tuple[int, int, int]:
        t = TEMPLATES[s]
        score = 2 * len(pcs & t) - len(pcs - t) - len(t - pcs)
        return score, int(s % 12 == bass), -s

    return max(range(N_STATES), key=key)


def viterbi(log_start: np.ndarray, log_trans: np.ndarray, log_emit: np.ndarray,
            obs: Sequence[int]) -> list[int]:
    """Most probable state path of an HMM, in log space.

    Args:
        log_start: (S,) log P(first state).
        log_trans: (S, S) log P(next state | state), rows = current state.
        log_emit: (S, O) log P(observation | state).
        obs: observation symbols, each in [0, O).

    Returns:
        The state sequence (one per observation); empty for no observations.
    """
    if len(obs) == 0:
        return []
    delta = log_start + log_emit[:, obs[0]]
    back = np.zeros((len(obs), len(delta)), dtype=np.int64)
    for t in range(1, len(obs)):
        scores = delta[:, None] + log_trans
        back[t] = scores.argmax(0)
        delta = scores.max(0) + log_emit[:, obs[t]]
    path = [int(delta.argmax())]
    for t in range(len(obs) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return path[::-1]


def _normalise(counts: np.ndarray, k: float) -> np.ndarray:
    """Log of add-k smoothed rows of a count array (the last axis sums to one)."""
    counts = counts + k
    return np.log(counts / counts.sum(-1, keepdims=True))


def shift_states(states: np.ndarray, k: int) -> np.ndarray:
    """Chord states transposed by ``k`` semitones (the quality is kept)."""
    return states // 12 * 12 + (states % 12 + k) % 12


def shift_obs(obs: np.ndarray, k: int) -> np.ndarray:
    """Observations transposed by ``k`` semitones (REST and the beat-strength part are kept)."""
    pc, strong = obs % N_PCS, obs // N_PCS
    return strong * N_PCS + np.where(pc == REST, REST, (pc + k) % 12)


@dataclass
class ChordHMM:
    """First-order chord HMM: log start, transition and emission probabilities.

    Attributes:
        log_start: (N_STATES,) log P(first chord).
        log_trans: (N_STATES, N_STATES) log P(next chord | chord).
        log_emit: (N_STATES, n_obs) log P(melody symbol | chord).
        meter: whether observations carry the beat strength (26 symbols instead of 13).
    """

    log_start: np.ndarray
    log_trans: np.ndarray
    log_emit: np.ndarray
    meter: bool = False

    @classmethod
    def fit(cls, seqs: Sequence[tuple[np.ndarray, np.ndarray]], k: float = DEFAULT_K,
            augment: bool = True, meter: bool = False) -> ChordHMM:
        """Counts (states, observations) sequences and smooths with add-k.

        Args:
            seqs: per piece, the chord states and the observation symbols (same length).
            k: add-k smoothing constant for every distribution.
            augment: also count every sequence in all 12 transpositions.
            meter: observations carry the beat strength.
        """
        n_obs = N_PCS * (2 if meter else 1)
        start, trans = np.zeros(N_STATES), np.zeros((N_STATES, N_STATES))
        emit = np.zeros((N_STATES, n_obs))
        for states, obs in seqs:
            if len(states) == 0:
                continue
            for shift in range(12) if augment else (0,):
                s, o = shift_states(np.asarray(states), shift), shift_obs(np.asarray(obs), shift)
                start[s[0]] += 1
                np.add.at(trans, (s[:-1], s[1:]), 1)
                np.add.at(emit, (s, o), 1)
        return cls(_normalise(start, k), _normalise(trans, k), _normalise(emit, k), meter)

    def decode(self, obs: Sequence[int]) -> list[int]:
        """The Viterbi chord sequence of an observation sequence."""
        return viterbi(self.log_start, self.log_trans, self.log_emit, obs)


def _top(notes: list) -> int | None:
    """Highest pitch among ``notes``, None when empty."""
    return max((n.pitch for n in notes), default=None)


def strong_beats(score: symusic.Score, n_beats: int) -> np.ndarray:
    """Per beat (quarter note) from tick 0: True on a downbeat or in the middle of a 4/4 bar."""
    beat, sigs = score.ticks_per_quarter, list(score.time_signatures)
    out = np.zeros(n_beats, dtype=bool)
    for i in range(n_beats):
        t = i * beat
        num, den, t0, bar = M.meter_at(sigs, t, beat)
        pos = (t - t0) % bar
        out[i] = pos == 0 or (num == 4 and den == 4 and 2 * pos == bar)
    return out


def melody_obs(mel_score: symusic.Score, n_beats: int, meter: bool) -> np.ndarray:
    """Observation symbol of every beat: the melody's pitch class at the onset (REST if none)."""
    notes, beat = M.all_notes(mel_score), mel_score.ticks_per_quarter
    tops = [_top(M.sounding(notes, i * beat)) for i in range(n_beats)]
    obs = np.array([REST if p is None else p % 12 for p in tops], dtype=np.int64)
    return obs + N_PCS * strong_beats(mel_score, n_beats) if meter else obs


def labelled_beats(mel_score: symusic.Score, harmony: list,
                   meter: bool) -> tuple[np.ndarray, np.ndarray]:
    """Chord states and observations of a piece, on the beats where the lower voices sound."""
    beat = mel_score.ticks_per_quarter
    end = max((n.end for n in M.all_notes(mel_score) + harmony), default=0)
    n_beats = -(-end // beat)
    obs = melody_obs(mel_score, n_beats, meter)
    states, keep = [], []
    for i in range(n_beats):
        now = M.sounding(harmony, i * beat)
        if now:
            bass = min(n.pitch for n in now) % 12
            states.append(chord_label(frozenset(n.pitch % 12 for n in now), bass))
            keep.append(i)
    return np.array(states, dtype=np.int64), obs[keep]


def fit_pieces(pieces: Sequence[Piece], tokenizer: REMI, k: float = DEFAULT_K,
               meter: bool = METER) -> ChordHMM:
    """Fits the HMM on pieces of the data loader (their melody and harmony tokens)."""
    seqs = [labelled_beats(decode(tokenizer, p.melody.tolist()),
                           M.all_notes(decode(tokenizer, p.harmony.tolist())), meter)
            for p in pieces]
    return ChordHMM.fit(seqs, k=k, meter=meter)


def place_below(pc: int, below: int) -> int:
    """Highest pitch of pitch class ``pc`` strictly below ``below``."""
    return below - ((below - pc) % 12 or 12)


def bass_pitch(pc: int) -> int:
    """The bass's pitch of pitch class ``pc``: in G2..F#3."""
    return BASS_LOW + (pc - BASS_LOW) % 12


def voice_chord(state: int, melody: int | None) -> list[int]:
    """Lower-voice pitches (bass first) of a chord under a melody pitch (see module docstring)."""
    q, root = divmod(state, 12)
    bass = bass_pitch(root)
    ref = melody if melody is not None else 72
    tones = [(root + i) % 12 for i in QUALITIES[q][2]]
    tones = [pc for pc in tones if melody is None or pc != melody % 12][:2]
    upper = sorted((place_below(pc, ref) for pc in tones), reverse=True)  # close position
    return [bass, *(p for p in upper if p > bass)]


def voice(chords: Sequence, mel_score: symusic.Score,
          place: Callable[[Any, int | None], list[int]] | None = None) -> list:
    """Lower-voice notes for one chord per beat under the melody; held pitches are tied.

    ``place(chord, melody pitch or None) -> pitches, bass first`` voices one beat's chord
    (default :func:`voice_chord`, for chord states).
    """
    place = place or voice_chord
    beat, notes = mel_score.ticks_per_quarter, M.all_notes(mel_score)
    end = max((n.end for n in notes), default=len(chords) * beat)
    held: dict[tuple[int, int], symusic.Note] = {}  # (voice, pitch) -> note still sounding
    out = []
    last_mel = None
    for i, chord in enumerate(chords):
        t = i * beat
        last_mel = _top(M.sounding(notes, t)) or last_mel
        dur = max(1, min(beat, end - t))
        now = {}
        for v, pitch in enumerate(place(chord, last_mel)):
            note = held.get((v, pitch))
            if note is not None and note.end == t:
                note.duration += dur
            else:
                note = symusic.Note(t, dur, pitch, VELOCITY)
                out.append(note)
            now[(v, pitch)] = note
        held = now
    return sorted(out, key=lambda n: (n.time, n.pitch))


def harmonise(hmm: ChordHMM, mel_score: symusic.Score) -> tuple[list[int], list]:
    """Viterbi chords (one per beat up to the melody's end) and their voicing."""
    beat = mel_score.ticks_per_quarter
    end = max((n.end for n in M.all_notes(mel_score)), default=0)
    chords = hmm.decode(melody_obs(mel_score, -(-end // beat), hmm.meter))
    return chords, voice(chords, mel_score)


def harmoniser(train: Sequence[Piece], tokenizer: REMI, k: float = DEFAULT_K,
               meter: bool = METER) -> Callable[[int, Piece, symusic.Score], list]:
    """Fits the HMM on ``train``; returns ``f(index, piece, melody score) -> lower-voice notes``.

    The signature is the one ``symbolic.evaluate.chord_metrics`` takes for any harmoniser.
    """
    hmm = fit_pieces(train, tokenizer, k=k, meter=meter)
    return lambda _i, _piece, mel_score: harmonise(hmm, mel_score)[1]
