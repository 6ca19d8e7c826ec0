"""The neural source-filter excitation: sines at the notes' pitches, made from the notes input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from umt_helpers import model_config

import umt.features as features
from umt.config import ModelConfig, to_dataclass, to_dict
from umt.errors import UmtError
from umt.features import excitation
from umt.labels import KEYS, LOWEST
from umt.model import UniversalTranslator
from umt.nn.condition import resolve_inputs

SR, HOP = 16_000, 160


def _notes(frames: int, spans: list[tuple[int, int, int]]) -> torch.Tensor:
    """(1, 176, frames) labels: each (midi, first frame, end frame) sounds at full activity."""
    notes = torch.zeros(1, 2 * KEYS, frames)
    for midi, a, b in spans:
        notes[0, midi - LOWEST, a:b] = 1.0
        notes[0, KEYS + midi - LOWEST, a] = 1.0
    return notes


def test_each_sounding_key_is_a_sine_at_its_pitch_and_silence_stays_silent():
    notes = _notes(100, [(69, 10, 60), (76, 30, 60)])  # A4 alone, then with E5
    x = excitation(notes, 100 * HOP)[0, 0].numpy()
    assert np.abs(x[: 9 * HOP]).max() == 0 and np.abs(x[61 * HOP :]).max() == 0
    both = x[35 * HOP : 55 * HOP]  # 0.2 s: 5 Hz bins
    spectrum = np.abs(np.fft.rfft(both * np.hanning(len(both))))
    freqs = np.fft.rfftfreq(len(both), 1 / SR)
    peaks = freqs[np.argsort(spectrum)[-2:]]
    e5 = 440 * 2 ** (7 / 12)
    assert sorted(np.round(peaks)) == pytest.approx(sorted([440.0, e5]), abs=5)
    assert np.abs(x[15 * HOP : 25 * HOP]).max() == pytest.approx(1.0, abs=1e-3)  # one sine


def test_pieces_join_without_a_seam_and_slices_are_the_slices_excitation(monkeypatch):
    rng = np.random.default_rng(0)
    spans = [(int(rng.integers(40, 90)), a, a + int(rng.integers(3, 30))) for a in range(0, 90, 7)]
    notes = _notes(100, spans)
    whole = excitation(notes, 100 * HOP)
    monkeypatch.setattr(features, "EXCITATION_PIECE", 777)  # pieces cut mid-frame
    pieced = excitation(notes, 100 * HOP)
    torch.testing.assert_close(pieced, whole, atol=1e-5, rtol=0)


def test_a_note_heads_probabilities_count_from_one_half():
    notes = _notes(20, [(60, 0, 20)])
    full = excitation(notes, 20 * HOP)
    assert excitation(notes * 0.5, 20 * HOP).abs().max() == 0
    torch.testing.assert_close(excitation(notes * 0.75, 20 * HOP), 0.5 * full)


def _config(condition: list[dict]) -> ModelConfig:
    raw = to_dict(model_config("tiny"))
    raw["condition"] = condition
    return to_dataclass(ModelConfig, raw)


def test_the_excitation_needs_the_notes_input():
    with pytest.raises(UmtError, match="made from the notes"):
        resolve_inputs(_config([{"name": "z", "feature": "latent"},
                                {"name": "sine", "feature": "excitation"}]))


def test_a_wavenet_reads_the_excitation_per_sample_and_learns_from_it():
    cfg = _config([{"name": "z", "feature": "latent"}, {"name": "notes", "feature": "notes"},
                   {"name": "sine", "feature": "excitation"}])
    model = UniversalTranslator(cfg, ["a"])
    spec = {s.name: s for s in model.inputs}["sine"]
    assert (spec.hop, spec.channels) == (1, 1)
    x = 0.1 * torch.randn(2, 1600)
    notes = _notes(10, [(64, 0, 10)]).expand(2, -1, -1)
    inputs = model.condition(x, notes=notes)
    assert inputs["sine"].shape == (2, 1, 1600)
    model.decoders["a"].loss(x, inputs).mean().backward()
    assert model.decoders["a"].condition.per_sample["sine"].weight.grad.abs().sum() > 0
