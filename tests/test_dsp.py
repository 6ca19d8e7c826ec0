"""Harmonic-plus-noise synthesiser (umt.nn.synth) and the multi-resolution STFT loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umt.losses import multi_resolution_stft_loss
from umt.nn.synth import (
    SynthControls,
    frames_to_samples,
    harmonic_audio,
    midi_to_hz,
    noise_audio,
    render,
)

SR, HOP = 16000, 160


def _voices(f0s, frames: int, k: int, amp: float = 1.0, inharmonicity: float | None = None):
    """Constant controls: (1, F, V) f0 and amplitude, (1, F, V, K) flat distribution."""
    f0 = torch.tensor(f0s, dtype=torch.float32).expand(1, frames, len(f0s)).contiguous()
    harm = torch.full((1, frames, len(f0s), k), 1.0 / k)
    b = None if inharmonicity is None else torch.full_like(f0, inharmonicity)
    return f0, torch.full_like(f0, amp), harm, b


def _spectrum(audio: torch.Tensor) -> np.ndarray:
    """Hann-windowed magnitude spectrum of a 1 s clip (1 Hz bins)."""
    x = audio.double().numpy()[0, :SR]
    return np.abs(np.fft.rfft(x * np.hanning(len(x))))


def _peak_near(spec: np.ndarray, hz: float, width: int = 12) -> float:
    lo = int(hz) - width
    return float(lo + np.argmax(spec[lo: int(hz) + width + 1]))


def test_midi_to_hz_and_frames_to_samples_follow_the_documented_rule():
    assert midi_to_hz(69.0).item() == pytest.approx(440.0)
    assert midi_to_hz(torch.tensor([60.0, 81.0])).tolist() == pytest.approx([261.6256, 880.0])
    frames = torch.tensor([[1.0, 3.0, 3.0]])
    up = frames_to_samples(frames, hop=4, prev=torch.tensor([0.0]))
    assert up.tolist() == [[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0, 3.0, 3.0, 3.0]]
    assert frames_to_samples(frames, hop=2).tolist() == [[1.0, 1.0, 2.0, 3.0, 3.0, 3.0]]


def test_spectral_peaks_at_harmonics_and_stretched_by_inharmonicity():
    f0s, k = [440.0, 277.18], 3
    audio, _ = harmonic_audio(*_voices(f0s, 100, k)[:3])
    spec = _spectrum(audio)
    expected = [f * n for f in f0s for n in range(1, k + 1)]
    for hz in expected:
        assert abs(_peak_near(spec, hz) - hz) <= 1.0
    floor = spec.copy()
    for hz in expected:
        floor[int(hz) - 10: int(hz) + 11] = 0.0
    assert floor.max() < 1e-3 * spec.max()

    stiff, _ = harmonic_audio(*_voices([440.0], 100, k, inharmonicity=1e-3))
    spec = _spectrum(stiff)
    for n in range(1, k + 1):
        hz = n * 440.0 * math.sqrt(1 + 1e-3 * n * n)
        assert abs(_peak_near(spec, hz) - hz) <= 1.0
    assert abs(_peak_near(spec, 1320.0) - 1320.0) > 4.0  # the 3rd partial really moved


def test_partials_above_nyquist_are_dropped_not_aliased():
    audio, _ = harmonic_audio(*_voices([3000.0], 100, 5)[:3])
    spec = _spectrum(audio)
    top = spec.max()
    assert spec[2995:3006].max() > 0.5 * top and spec[5995:6006].max() > 0.5 * top
    for alias in (7000, 4000, 1000):  # where 9, 12 and 15 kHz would fold back to
        assert spec[alias - 20: alias + 21].max() < 1e-4 * top


def test_constant_pitch_is_an_analytic_sine():
    audio, _ = harmonic_audio(*_voices([440.0], 50, 1, amp=0.5)[:3])
    n = np.arange(50 * HOP)
    ref = 0.5 * np.sin(2 * np.pi * 440.0 * n / SR)
    assert np.abs(audio[0].double().numpy() - ref).max() < 1e-3


def test_phase_stays_precise_over_a_minute():
    frames = 60 * 100
    audio, state = harmonic_audio(*_voices([440.0], frames, 1)[:3])
    n = np.arange(frames * HOP - SR, frames * HOP)
    ref = np.sin(2 * np.pi * 440.0 * n / SR)  # float64 phase, as a float32 cumsum cannot keep
    assert np.abs(audio[0, -SR:].double().numpy() - ref).max() < 1e-3
    assert state.phase.dtype == torch.float64


def test_pitch_jumps_leave_no_discontinuity():
    f0 = torch.tensor([200.0, 2000.0, 350.0, 1500.0, 2000.0]).repeat_interleave(6)
    audio, _ = harmonic_audio(f0.view(1, -1, 1), torch.full((1, 30, 1), 0.8),
                              torch.ones(1, 30, 1, 1))
    step = (audio[0, 1:] - audio[0, :-1]).abs().max().item()
    assert step <= 2 * math.pi * 2000.0 / SR * 0.8 * 1.001


def _naive_harmonic(f0, amp, harm, inh, hop=HOP, sr=SR) -> np.ndarray:
    """Per-sample float64 reference of the documented rule: ramp, hold at on/offsets, mask."""
    f0, amp, harm, inh = (t.double().numpy()[0] for t in (f0, amp, harm, inh))
    k = np.arange(1, harm.shape[-1] + 1)
    w = 2 * np.pi / sr * f0[..., None] * k * np.sqrt(1 + inh[..., None] * k**2)  # (F, V, K)
    a = (amp * (f0 > 0))[..., None] * harm
    out, phase = [], np.zeros(w.shape[1:])
    for f in range(w.shape[0]):
        wp, ap = (w[f - 1], a[f - 1]) if f else (w[0], a[0])
        w0, w1 = np.where(wp > 0, wp, w[f]), np.where(w[f] > 0, w[f], wp)
        for j in range(hop):
            r = (j + 1) / hop
            rate = w0 + (w1 - w0) * r
            out.append(np.sum((ap + (a[f] - ap) * r) * np.sin(phase) * (rate < np.pi)))
            phase = phase + rate
    return np.array(out)


def _random_controls(frames: int, v: int = 2, k: int = 6, bands: int = 33, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f0 = 200.0 + 1200.0 * torch.rand(1, frames, v, generator=g)
    f0[:, 3:7, 0] = 0.0  # an offset and an onset
    f0[:, :2, 1] = 0.0  # a voice entering late
    f0[:, 10:12, 1] = 3990.0  # its 2nd partial crosses Nyquist inside a frame
    return SynthControls(
        f0=f0,
        amplitude=torch.rand(1, frames, v, generator=g),
        harmonics=torch.softmax(torch.randn(1, frames, v, k, generator=g), dim=-1),
        noise=torch.rand(1, frames, bands, generator=g),
        inharmonicity=1e-3 * torch.rand(1, frames, v, generator=g),
    )


def test_harmonic_part_matches_a_naive_per_sample_reference():
    c = _random_controls(20)
    audio, _ = harmonic_audio(c.f0, c.amplitude, c.harmonics, c.inharmonicity)
    ref = _naive_harmonic(c.f0, c.amplitude, c.harmonics, c.inharmonicity)
    assert np.abs(audio[0].double().numpy() - ref).max() < 1e-4


def _chunk(c: SynthControls, lo: int, hi: int) -> SynthControls:
    return SynthControls(*(None if t is None else t[:, lo:hi] for t in
                           (c.f0, c.amplitude, c.harmonics, c.noise, c.inharmonicity)))


def test_chunked_render_equals_one_go():
    c = _random_controls(40)
    noise = torch.rand(1, 40 * HOP, generator=torch.Generator().manual_seed(1)) * 2 - 1
    whole, _ = render(c, noise=noise)
    harm_whole, _ = harmonic_audio(c.f0, c.amplitude, c.harmonics, c.inharmonicity)
    parts, harm_parts, state, hstate = [], [], None, None
    for lo, hi in ((0, 13), (13, 27), (27, 40)):
        out, state = render(_chunk(c, lo, hi), state, noise=noise[:, lo * HOP: hi * HOP])
        parts.append(out)
        piece = _chunk(c, lo, hi)
        out, hstate = harmonic_audio(piece.f0, piece.amplitude, piece.harmonics,
                                     piece.inharmonicity, hstate)
        harm_parts.append(out)
    assert (torch.cat(harm_parts, 1) - harm_whole).abs().max() < 1e-4
    assert (torch.cat(parts, 1) - whole).abs().max() < 1e-4
    assert state.noise_tail.shape == (1, 2 * (33 - 1) - 1)
    assert (noise_audio(c.noise, noise=noise)[0] - (whole - harm_whole)).abs().max() < 1e-5


def test_flat_unit_noise_filter_is_a_pure_delay():
    bands = 65
    noise = torch.rand(2, 30 * HOP) * 2 - 1
    first, tail = noise_audio(torch.ones(2, 20, bands), noise=noise[:, : 20 * HOP])
    second, _ = noise_audio(torch.ones(2, 10, bands), tail, noise=noise[:, 20 * HOP:])
    delay = bands - 1  # L / 2 with L = 2 (bands - 1) taps
    out = torch.cat([first, second], 1)
    assert (out[:, delay:] - noise[:, :-delay]).abs().max() < 1e-5
    assert out[:, :delay].abs().max() < 1e-6


def test_noise_filter_shapes_the_spectrum_and_generator_is_deterministic():
    mags = torch.zeros(1, 100, 65)
    mags[..., :17] = 1.0  # pass 0 .. 2 kHz
    a, _ = noise_audio(mags, generator=torch.Generator().manual_seed(3))
    b, _ = noise_audio(mags, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    spec = _spectrum(a) ** 2
    assert spec[3000:8000].sum() < 1e-3 * spec[:2000].sum()


def test_gradients_reach_every_control():
    c = _random_controls(12)
    for t in (c.amplitude, c.harmonics, c.noise, c.inharmonicity):
        t.requires_grad_(True)
    audio, _ = render(c, generator=torch.Generator().manual_seed(0))
    target = torch.randn_like(audio) * 0.1
    multi_resolution_stft_loss(audio, target).backward()
    for t in (c.amplitude, c.harmonics, c.noise, c.inharmonicity):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_stft_loss_zero_on_identity_and_shrinks_with_the_gain_mismatch():
    g = torch.Generator().manual_seed(0)
    n = torch.arange(8000) / SR
    x = torch.sin(2 * math.pi * 440.0 * n)[None] + 0.01 * torch.randn(1, 8000, generator=g)
    y = torch.sin(2 * math.pi * 470.0 * n)[None]
    assert multi_resolution_stft_loss(x, x).item() == 0.0
    assert multi_resolution_stft_loss(x, y).item() > 0.0
    assert multi_resolution_stft_loss(x, y).item() == pytest.approx(
        multi_resolution_stft_loss(y, x).item(), rel=1e-6)
    losses = [multi_resolution_stft_loss(gain * x, x).item() for gain in (0.3, 0.6, 0.9, 0.99)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.1 * losses[0]
    assert multi_resolution_stft_loss(0.9 * x, x) < multi_resolution_stft_loss(y, x)


def test_stft_loss_is_finite_on_silence_and_short_clips_and_checks_shapes():
    pred = torch.zeros(2, 500, requires_grad=True)
    loss = multi_resolution_stft_loss(pred, torch.randn(2, 500))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
    with pytest.raises(ValueError, match="differ"):
        multi_resolution_stft_loss(torch.zeros(1, 10), torch.zeros(1, 11))


def test_stft_loss_normalisation_is_mean_linear_plus_mean_log_per_size():
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    mags = [torch.stft(x, n, n // 4, window=torch.hann_window(n), center=True,
                       pad_mode="constant", return_complex=True).abs() for n in (256, 64)]
    # pred = x / 2: every bin's linear error is |S| / 2 and its log error is log 2.
    expected = sum(0.5 * m.mean().item() + math.log(2.0) for m in mags) / 2
    got = multi_resolution_stft_loss(0.5 * x, x, fft_sizes=(256, 64)).item()
    assert got == pytest.approx(expected, rel=1e-4)
