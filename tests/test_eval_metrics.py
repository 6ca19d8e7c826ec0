"""Pitch and distance metrics on cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.instruments import resolve_soundfonts
from data.render import read_tracks, render
from evaluation.distance import log_mel_distance, mr_stft_distance
from evaluation.pitch import chroma_similarity, pitch_scores, track_pitch
from tests._paired import paired  # noqa: F401  (fixture)
from umt import audio

SR = audio.SAMPLE_RATE


def _sine(f0: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


def test_distances_are_zero_on_self_and_ignore_level():
    rng = np.random.default_rng(0)
    x = _sine(440.0) + 0.01 * rng.standard_normal(SR).astype(np.float32)
    assert log_mel_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert mr_stft_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    # Level is not timbre: a quieter copy is (nearly) the same clip.
    assert log_mel_distance(0.3 * x, x) < 0.05 and mr_stft_distance(0.3 * x, x) < 0.01
    y = _sine(660.0)
    assert log_mel_distance(y, x) > 3.0 and mr_stft_distance(y, x) > 1.0


def _soprano_and_shifted(root) -> tuple[np.ndarray, np.ndarray]:
    """A rendered soprano line (3 s) and the same notes a semitone higher, same SoundFont."""
    m = json.loads((root / "manifest.json").read_text())
    name, e = next((p, e) for p, e in sorted(m["pieces"].items()) if e["monophonic"])
    notes = [n for n in read_tracks(root / e["midi"])[0][1] if n.start < 3.0]
    font = resolve_soundfonts(e["audio"]["violin"]["soundfont"])[0]
    up = [n._replace(pitch=n.pitch + 1) for n in notes]
    a, b = (audio.normalize_loudness(render(ns, font, 40))[: 3 * SR] for ns in (notes, up))
    return a, b


def test_pitch_self_is_perfect_and_a_semitone_fails(paired):  # noqa: F811
    line, shifted = _soprano_and_shifted(paired)
    ref = track_pitch(line)
    assert ref.voiced.mean() > 0.5
    assert pitch_scores(ref, ref) == {"rpa": 1.0, "rca": 1.0, "voicing": 1.0}
    up = pitch_scores(track_pitch(shifted), ref)
    assert up["rpa"] < 0.1 and up["rca"] < 0.1  # 100 cents off: outside the 50-cent tolerance
    assert up["voicing"] > 0.8  # same rhythm: the voicing still agrees
    assert chroma_similarity(line, line) == pytest.approx(1.0, abs=1e-6)
    assert chroma_similarity(shifted, line) < 0.5


def test_octave_is_a_raw_pitch_error_but_not_a_chroma_error():
    a, b = _sine(220.0), _sine(440.0)
    ta, tb = track_pitch(a), track_pitch(b)
    s = pitch_scores(tb, ta)
    assert s["rpa"] < 0.1 and s["rca"] > 0.9
