"""The HMM harmoniser: Viterbi against brute force, smoothed counts, chord labels, voicing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import symusic

from symbolic import hmm as H

TPQ = 8


def _path_logp(start, trans, emit, obs, path) -> float:
    lp = start[path[0]] + emit[path[0], obs[0]]
    for t in range(1, len(obs)):
        lp += trans[path[t - 1], path[t]] + emit[path[t], obs[t]]
    return lp


def _brute_force(start, trans, emit, obs) -> list[int]:
    paths = itertools.product(range(len(start)), repeat=len(obs))
    return list(max(paths, key=lambda p: _path_logp(start, trans, emit, obs, p)))


def test_viterbi_known_toy_path():
    # The classic healthy/fever HMM: states (healthy, fever), observations (normal, cold, dizzy).
    start = np.log([0.6, 0.4])
    trans = np.log([[0.7, 0.3], [0.4, 0.6]])
    emit = np.log([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]])
    obs = [0, 1, 2]
    assert H.viterbi(start, trans, emit, obs) == [0, 0, 1]
    assert _brute_force(start, trans, emit, obs) == [0, 0, 1]
    assert H.viterbi(start, trans, emit, []) == []


def test_viterbi_matches_brute_force_on_a_three_state_hmm():
    start = np.log([0.5, 0.3, 0.2])
    trans = np.log([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]])
    emit = np.log([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs = rng.integers(0, 3, size=int(rng.integers(1, 7))).tolist()
        got = H.viterbi(start, trans, emit, obs)
        best = _brute_force(start, trans, emit, obs)
        assert _path_logp(start, trans, emit, obs, got) == pytest.approx(
            _path_logp(start, trans, emit, obs, best))
        assert got == best


def test_fit_gives_add_k_smoothed_probabilities():
    k, S, n_obs = 0.5, H.N_STATES, H.N_PCS
    seqs = [(np.array([0, 0, 7]), np.array([0, 4, 2])), (np.array([7]), np.array([H.REST]))]
    hmm = H.ChordHMM.fit(seqs, k=k, augment=False)
    p = {name: np.exp(getattr(hmm, name)) for name in ("log_start", "log_trans", "log_emit")}
    assert p["log_start"][0] == pytest.approx((1 + k) / (2 + k * S))
    assert p["log_start"][7] == pytest.approx((1 + k) / (2 + k * S))
    assert p["log_start"][1] == pytest.approx(k / (2 + k * S))
    assert p["log_trans"][0, 0] == pytest.approx((1 + k) / (2 + k * S))  # 0->0 and 0->7
    assert p["log_trans"][0, 7] == pytest.approx((1 + k) / (2 + k * S))
    assert p["log_trans"][0, 5] == pytest.approx(k / (2 + k * S))
    assert np.allclose(p["log_trans"][7], 1 / S)  # no transition out of 7: uniform
    assert p["log_emit"][0, 4] == pytest.approx((1 + k) / (2 + k * n_obs))
    assert p["log_emit"][7, 2] == pytest.approx((1 + k) / (2 + k * n_obs))
    assert p["log_emit"][7, H.REST] == pytest.approx((1 + k) / (2 + k * n_obs))
    for v in p.values():
        assert np.allclose(v.sum(-1), 1)


def test_fit_augments_all_twelve_transpositions():
    seqs = [(np.array([0, 7]), np.array([4, H.REST]))]  # C -> G, melody E then a rest
    hmm = H.ChordHMM.fit(seqs, k=0.1, augment=True)
    for shift in range(12):
        s = H.shift_states(np.array([0, 7]), shift)
        assert hmm.log_trans[s[0], s[1]] == pytest.approx(hmm.log_trans[0, 7])
        assert hmm.log_emit[s[0], (4 + shift) % 12] == pytest.approx(hmm.log_emit[0, 4])
        assert hmm.log_emit[s[1], H.REST] == pytest.approx(hmm.log_emit[7, H.REST])
    assert hmm.log_trans[0, 7] > hmm.log_trans[0, 5]
    assert H.shift_states(np.array([12 + 11]), 2).tolist() == [12 + 1]  # B minor -> C# minor
    assert H.shift_obs(np.array([H.REST, 11 + H.N_PCS]), 1).tolist() == [H.REST, H.N_PCS]


@pytest.mark.parametrize("pcs, bass, name", [
    ({0, 4, 7}, 0, "C"), ({9, 0, 4}, 9, "Am"), ({7, 11, 2, 5}, 7, "G7"), ({11, 2, 5}, 11, "Bdim"),
    ({0, 4, 7}, 4, "C"), ({7, 11, 5}, 7, "G7"), ({0, 7}, 0, "C"),  # first inversion, no fifth
    ({4, 7}, 4, "Em"), ({4, 7}, None, "C"),  # a tie: the bass's root, else major first
    ({0, 4, 7, 9}, 9, "Am"), ({0, 4, 7, 9}, 0, "C"),
])
def test_chord_label(pcs, bass, name):
    assert H.chord_name(H.chord_label(frozenset(pcs), bass)) == name


def test_chord_label_rejects_an_empty_set():
    with pytest.raises(ValueError):
        H.chord_label(frozenset())


def _score(melody: list[int | None], chords: list[str] | None = None,
           ) -> tuple[symusic.Score, list]:
    """One note per beat (None = rest) and a root-position chord per beat (C3 to B3 bass)."""
    score = symusic.Score(TPQ)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("melody")
    for i, p in enumerate(melody):
        if p is not None:
            track.notes.append(symusic.Note(i * TPQ, TPQ, p, 80))
    score.tracks.append(track)
    states = {H.chord_name(s): s for s in range(H.N_STATES)}
    harmony = [symusic.Note(i * TPQ, TPQ, 48 + pc + 12 * (j > 0), 80)
               for i, name in enumerate(chords or [])
               for j, pc in enumerate(sorted(H.chord_pcs(states[name]),
                                             key=lambda x: (x - states[name]) % 12))]
    return score, harmony


CHORALES = [  # (melody, chords): tiny hand-made "chorales" in C major
    ([72, 76, 79, 72], ["C", "C", "C", "C"]),
    ([67, 71, 74, 67], ["G", "G", "G", "G"]),
    ([65, 69, 72, 65], ["F", "F", "F", "F"]),
    ([72, 74, 76, 77, 79, 72], ["C", "G", "C", "F", "C", "C"]),
    ([71, 72, 74, 71, 72], ["G", "C", "G", "G", "C"]),
]


@pytest.mark.parametrize("meter", [False, True])
def test_decoding_a_simple_melody_gives_sensible_chords(meter):
    seqs = [H.labelled_beats(*_score(m, c), meter) for m, c in CHORALES]
    assert [H.chord_name(s) for s in seqs[3][0]] == CHORALES[3][1]
    hmm = H.ChordHMM.fit(seqs, meter=meter)
    melody, _ = _score([72, 76, 79, 72])  # C E G C
    chords, notes = H.harmonise(hmm, melody)
    assert [H.chord_name(s) for s in chords] == ["C"] * 4
    assert {n.pitch % 12 for n in notes} == {0, 4, 7}
    chords, _ = H.harmonise(hmm, _score([71, 74, 71, None, 72])[0])  # B D B (rest) C
    names = [H.chord_name(s) for s in chords]
    assert len(names) == 5 and names[:3] == ["G"] * 3 and names[-1] == "C"


def test_strong_beats_follow_the_meter():
    score, _ = _score([60] * 8)
    assert H.strong_beats(score, 8).tolist() == [True, False, True, False] * 2
    score.time_signatures[0] = symusic.TimeSignature(0, 3, 4)
    assert H.strong_beats(score, 6).tolist() == [True, False, False] * 2


def test_voice_chord_stays_below_the_melody_on_chord_tones():
    for state in range(H.N_STATES):
        pcs = H.chord_pcs(state)
        for melody in range(60, 82):
            pitches = H.voice_chord(state, melody)
            assert pitches[0] % 12 == state % 12 and 43 <= pitches[0] <= 54  # bass = root
            assert all(p < melody for p in pitches)
            assert {p % 12 for p in pitches} <= pcs
            assert pitches[1:] == sorted(pitches[1:], reverse=True)  # alto above tenor
            assert all(p > pitches[0] for p in pitches[1:])
            assert all(p % 12 != melody % 12 for p in pitches[1:])  # the melody is not doubled
            assert all(p >= melody - 12 for p in pitches[1:])  # close position
            assert len(pitches) == 3 or melody < 67  # only a low melody leaves out a voice
    assert H.voice_chord(0, 72) == [48, 67, 64]  # C under C5: C3, G4, E4
    assert H.voice_chord(24 + 7, 77) == [43, 74, 71]  # G7 under F5: G2, D5, B4
    assert H.voice_chord(0, 64) == [48, 60, 55]  # C under E4: C3, C4, G3
    assert H.voice_chord(0, None) == [48, 67, 64]  # no melody: as under C5


def test_voice_ties_repeated_pitches_and_matches_the_chords():
    melody, _ = _score([72, 72, 74, 76])
    chords = [0, 0, 7, 0]  # C C G C
    notes = H.voice(chords, melody)
    mel_notes = list(melody.tracks[0].notes)
    for i, state in enumerate(chords):
        now = [n for n in notes if n.time <= i * TPQ < n.end]
        top = max(n.pitch for n in mel_notes if n.time <= i * TPQ < n.end)
        assert len(now) == 3 and all(n.pitch < top for n in now)
        assert {n.pitch % 12 for n in now} <= H.chord_pcs(state)
        assert min(now, key=lambda n: n.pitch).pitch % 12 == state % 12
    # beats 1-2 are one voicing (tied); G under D5 is G2 B4 G4; C under E5 keeps the tenor G4
    assert len(notes) == 3 + 3 + 2
    assert sorted((n.time // TPQ, n.duration // TPQ, n.pitch) for n in notes) == [
        (0, 2, 48), (0, 2, 64), (0, 2, 67), (2, 1, 43), (2, 1, 71), (2, 2, 67), (3, 1, 48),
        (3, 1, 72)]
    assert max(n.end for n in notes) == 4 * TPQ


def test_eval_glue_on_real_chorales(cache_dir, tokenizer):
    from symbolic.config import DataConfig
    from symbolic.data import load_pieces
    from symbolic.evaluate import TAGGER_LABEL, _chord_rows, chord_metrics

    cfg = DataConfig(cache_dir=str(cache_dir), limit=4, val_fraction=0.3, test_fraction=0.3)
    pieces = [p for split in load_pieces(cfg, tokenizer).values() for p in split]
    report = chord_metrics(tokenizer, pieces, H.harmoniser(pieces, tokenizer))
    assert report["beats"] > 50
    assert report["root_acc"] > 0.3 and report["jaccard"] > 0.3  # fitted on these very pieces
    # Bach's own voices: mostly one chord per beat, mostly in the soprano's key
    assert report["consonance_real"] > 0.6 and report["in_key_real"] > 0.8
    assert 0 <= report["consonance_gen"] <= 1 and 0 <= report["in_key_gen"] <= 1
    rows = _chord_rows(report, report, {})
    assert H.LABEL in rows[2] and f"{report['jaccard']:.3f}" in rows[2]
    assert len(rows) == 4  # head, transformer, HMM, real: no tagger row without a tagger
    assert TAGGER_LABEL in _chord_rows(report, report, report)[3]
