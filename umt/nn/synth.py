"""Differentiable harmonic-plus-filtered-noise synthesiser (DDSP, Engel et al. 2020), streamable.

A frame decoder emits controls at ``sample_rate / hop`` frames per second (16 kHz, hop 160:
100 frames/s); this module renders them to audio and keeps the state that lets chunks of frames
be rendered one after another with the same result as one call over all of them.

Time convention (shared by every function here): frame ``f`` owns the output samples
``[f*H, (f+1)*H)``. A control is linearly interpolated over its frame from the previous frame's
value to its own: sample ``f*H + j`` (``0 <= j < H``) takes ``c[f-1] + (c[f] - c[f-1]) *
(j + 1) / H``, so ``c[f]`` is reached exactly at the frame's last sample ``(f+1)*H - 1``.
Interpolating towards the frame end instead of between frame centres costs half a hop of
latency but needs no look-ahead, so a streamed chunk never waits for the next frame. Before the
first frame (no state) ``c[-1] = c[0]``: the controls are held, no fade-in.

Noise is shaped per frame by a frequency-sampled FIR (zero-phase from the band magnitudes, Hann
windowed, made causal by a shift of ``L/2`` samples, where ``L = 2 * (bands - 1)`` is its
length) and overlap-added at hop ``H``; the filter's ``L - 1`` sample tail is the noise state.
The noise part therefore lags its controls by ``L/2`` samples (64 for 65 bands, 4 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

SAMPLE_RATE = 16000
HOP = 160
TWO_PI = 2.0 * math.pi


def midi_to_hz(midi: Tensor | float) -> Tensor:
    """Equal-tempered frequency of MIDI note numbers (A4 = 69 = 440 Hz).

    Args:
        midi: note numbers, any shape (fractional values are cents-accurate).

    Returns:
        Frequencies in Hz, same shape as ``midi``.
    """
    midi = torch.as_tensor(midi, dtype=torch.get_default_dtype())
    return 440.0 * torch.pow(2.0, (midi - 69.0) / 12.0)


def _ramp(hop: int, like: Tensor) -> Tensor:
    """Interpolation weights ``(j + 1) / H`` for ``j = 0 .. H-1``: shape (H,)."""
    return torch.arange(1, hop + 1, device=like.device, dtype=like.dtype) / hop


def frames_to_samples(frames: Tensor, hop: int = HOP, prev: Tensor | None = None) -> Tensor:
    """Upsample frame-rate controls to audio rate by the module's interpolation rule.

    Args:
        frames: (B, F, *rest) controls, one per frame.
        hop: samples per frame H.
        prev: (B, *rest) the control of the frame before ``frames[:, 0]``; ``None`` holds
            ``frames[:, 0]``.

    Returns:
        (B, F*H, *rest): sample ``f*H + j`` is ``c[f-1] + (c[f] - c[f-1]) * (j + 1) / H``.
    """
    first = frames[:, :1] if prev is None else prev[:, None]
    before = torch.cat([first, frames[:, :-1]], dim=1)
    shape = (1, 1, hop) + (1,) * (frames.dim() - 2)
    r = _ramp(hop, frames).view(shape)
    up = before[:, :, None] + (frames - before)[:, :, None] * r
    return up.flatten(1, 2)


@dataclass
class SynthState:
    """What carries a render across a chunk seam; plain tensors only.

    Attributes:
        phase: (B, V, K) float64 phase of each voice's partial at the next sample, in [0, 2 pi).
        freq: (B, V, K) float64 each partial's rate (radians/sample) at the last frame;
            0 = silent.
        amp: (B, V, K) each partial's amplitude at the last frame.
        noise_tail: (B, L - 1) the noise filter's overlap tail still to be added; (B, 0)
            when no noise was rendered.
    """

    phase: Tensor
    freq: Tensor
    amp: Tensor
    noise_tail: Tensor


@dataclass
class SynthControls:
    """One chunk of frame-rate controls for :func:`render`.

    Attributes:
        f0: (B, F, V) fundamental of each voice in Hz; 0 = the voice is silent.
        amplitude: (B, F, V) >= 0 overall amplitude of each voice.
        harmonics: (B, F, V, K) >= 0 share of the amplitude for each partial (e.g. a softmax).
        noise: (B, F, N) >= 0 noise filter magnitudes at N linear bands 0 .. sr/2, or None.
        inharmonicity: (B, F, V) >= 0 stiff-string coefficient B, or None (harmonic).
    """

    f0: Tensor
    amplitude: Tensor
    harmonics: Tensor
    noise: Tensor | None = None
    inharmonicity: Tensor | None = None


def partial_rates(f0: Tensor, n_harmonics: int, sample_rate: int = SAMPLE_RATE,
                  inharmonicity: Tensor | None = None) -> Tensor:
    """Per-partial rates in radians per sample: partial k is ``k f0 sqrt(1 + B k^2)``.

    Args:
        f0: (B, F, V) fundamentals in Hz (0 = silent, giving rate 0 for every partial).
        n_harmonics: K partials per voice.
        sample_rate: audio rate in Hz.
        inharmonicity: (B, F, V) >= 0 coefficient B, or None for exact harmonics.

    Returns:
        (B, F, V, K) rates in radians per sample.
    """
    k = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=f0.dtype)
    stretch = k if inharmonicity is None else k * torch.sqrt(1.0 + inharmonicity[..., None] * k**2)
    return (TWO_PI / sample_rate) * f0[..., None] * stretch


def _frame_phases(phase: Tensor, w0: Tensor, w1: Tensor, hop: int) -> tuple[Tensor, Tensor]:
    """Phase at each frame's first sample, and after the last frame.

    The per-sample rate ramps linearly from ``w0`` to ``w1`` over the frame, so the sum of its
    H samples is exact in closed form; accumulating that at frame rate in float64 (then
    wrapping) keeps the phase precise for hours without an audio-rate cumulative sum.

    Args:
        phase: (B, P) float64 phase before the first frame.
        w0: (B, F, P) float64 rate the frame starts from. w1: (B, F, P) rate it ends at.
        hop: samples per frame.

    Returns:
        (B, F, P) float64 start phases in [0, 2 pi), and (B, P) end phase.
    """
    advance = hop * w0 + (w1 - w0) * ((hop + 1) / 2)
    total = torch.cumsum(torch.cat([phase[:, None], advance], dim=1), dim=1)
    wrapped = torch.remainder(total, TWO_PI)
    return wrapped[:, :-1], wrapped[:, -1]


def _sum_partials(start: Tensor, w0: Tensor, w1: Tensor, a0: Tensor, a1: Tensor,
                  hop: int) -> Tensor:
    """Sum of ``a(n) sin(phase(n))`` over partials for every sample of every frame.

    Args:
        start: (B, F, P) phase at each frame's first sample.
        w0, w1: (B, F, P) rates the frame ramps between (radians/sample).
        a0, a1: (B, F, P) amplitudes the frame ramps between.
        hop: samples per frame H.

    Returns:
        (B, F*H) audio.
    """
    j = torch.arange(hop, device=start.device, dtype=start.dtype)
    r = (j + 1) / hop
    dw = w1 - w0
    # phase(j) = start + w0 j + dw j (j+1) / 2H: the exact cumulative sum of the ramped rate,
    # as one (H, 3) x (3, P) product per frame instead of an audio-rate cumsum.
    coeff = torch.stack([torch.ones_like(j), j, j * r / 2], dim=-1)
    phase = coeff @ torch.stack([start, w0, dw], dim=-2)
    sines = torch.sin(phase)
    reaches = (w0 >= math.pi) | (w1 >= math.pi)
    if bool(reaches.any()):
        # Anti-aliasing per sample: a partial gliding through Nyquist stops at the sample it
        # crosses, not at a frame boundary. Skipped when no partial is near Nyquist.
        rate = torch.stack([torch.ones_like(r), r], dim=-1) @ torch.stack([w0, dw], dim=-2)
        sines = sines.masked_fill(rate >= math.pi, 0.0)
    # The amplitude ramp a0 + r (a1 - a0) is linear in r, so the partial sum is two mat-vecs.
    both = sines @ torch.stack([a0, a1 - a0], dim=-1)
    audio = both[..., 0] + r * both[..., 1]
    return audio.flatten(1)


def _check_harmonic(f0: Tensor, amplitude: Tensor, harmonics: Tensor,
                    inharmonicity: Tensor | None) -> None:
    """Raise ValueError unless the controls' shapes agree (see :class:`SynthControls`)."""
    if f0.dim() != 3 or amplitude.shape != f0.shape:
        raise ValueError(f"f0 and amplitude must both be (B, F, V); got {tuple(f0.shape)} and "
                         f"{tuple(amplitude.shape)}")
    if harmonics.dim() != 4 or harmonics.shape[:3] != f0.shape:
        raise ValueError(f"harmonics must be (B, F, V, K) matching f0 {tuple(f0.shape)}; got "
                         f"{tuple(harmonics.shape)}")
    if inharmonicity is not None and inharmonicity.shape != f0.shape:
        raise ValueError(f"inharmonicity must be (B, F, V) like f0; got "
                         f"{tuple(inharmonicity.shape)}")


def harmonic_audio(f0: Tensor, amplitude: Tensor, harmonics: Tensor,
                   inharmonicity: Tensor | None = None, state: SynthState | None = None,
                   sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> tuple[Tensor, SynthState]:
    """Render a bank of K partials for each of V voices.

    Partial k of voice v has amplitude ``amplitude * harmonics[..., k]`` (zero where f0 = 0) and
    rate ``k f0 sqrt(1 + B k^2)``; both follow the module's interpolation rule, phase is the
    cumulative sum of the rate, and a partial is silenced on every sample where its rate
    reaches Nyquist. A voice switching on or off holds its sounding pitch over the frame while
    its amplitude ramps to or from zero, so notes fade over one hop instead of gliding from 0 Hz.

    Args:
        f0: (B, F, V) Hz. amplitude: (B, F, V). harmonics: (B, F, V, K).
        inharmonicity: (B, F, V) or None.
        state: from the previous chunk; None starts at phase 0 with the first frame held. Its
            ``noise_tail`` is passed through untouched.
        sample_rate: audio rate in Hz. hop: samples per frame H.

    Returns:
        (B, F*H) audio, and the state after the last frame.
    """
    _check_harmonic(f0, amplitude, harmonics, inharmonicity)
    with torch.autocast(f0.device.type, enabled=False):
        # Under bf16 autocast the phase matmul would round phases of ~500 rad to steps of 2:
        # the partials would be noise. The bank runs in float32/64 whatever the caller's mode.
        return _harmonic_audio(f0.float(), amplitude.float(), harmonics.float(),
                               None if inharmonicity is None else inharmonicity.float(),
                               state, sample_rate, hop)


def _harmonic_audio(f0: Tensor, amplitude: Tensor, harmonics: Tensor,
                    inharmonicity: Tensor | None, state: SynthState | None,
                    sample_rate: int, hop: int) -> tuple[Tensor, SynthState]:
    b, _, v = f0.shape
    k = harmonics.shape[-1]
    # Rates in float64 at frame rate (cheap): a float32 rate is off by ~1e-7 relative, which
    # a minute of accumulated phase turns into a 0.01 rad drift from the asked pitch.
    inh = None if inharmonicity is None else inharmonicity.double()
    w = partial_rates(f0.double(), k, sample_rate, inh).flatten(2)
    a = ((amplitude * (f0 > 0))[..., None] * harmonics).flatten(2)
    if state is None:
        state = SynthState(torch.zeros(b, v * k, dtype=torch.float64, device=f0.device),
                           w[:, 0], a[:, 0], f0.new_zeros(b, 0))
    w_prev = torch.cat([state.freq.reshape(b, 1, -1), w[:, :-1]], dim=1)
    a_prev = torch.cat([state.amp.reshape(b, 1, -1), a[:, :-1]], dim=1)
    w0 = torch.where(w_prev > 0, w_prev, w)
    w1 = torch.where(w > 0, w, w_prev)
    start, end = _frame_phases(state.phase.reshape(b, -1), w0, w1, hop)
    audio = _sum_partials(*(t.to(a.dtype) for t in (start, w0, w1)), a_prev, a, hop)
    new = SynthState(end.view(b, v, k), w[:, -1].view(b, v, k), a[:, -1].view(b, v, k),
                     state.noise_tail)
    return audio, new


@lru_cache(maxsize=32)
def _hann(length: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Periodic Hann window: (length,), peak at ``length // 2`` where the shifted FIR peaks."""
    return torch.hann_window(length, periodic=True, device=device, dtype=dtype)


def _noise_transfer(magnitudes: Tensor, n_fft: int) -> Tensor:
    """Frequency response of each frame's windowed FIR: (B, F, N) -> (B, F, n_fft//2 + 1)."""
    length = 2 * (magnitudes.shape[-1] - 1)
    ir = torch.fft.irfft(magnitudes, n=length)  # real input: a zero-phase response
    ir = torch.roll(ir, length // 2, dims=-1) * _hann(length, ir.device, ir.dtype)
    return torch.fft.rfft(ir, n=n_fft)


def _overlap_add(blocks: Tensor, hop: int) -> Tensor:
    """Sum blocks placed every ``hop`` samples: (B, F, S) -> (B, (F-1)*hop + S)."""
    b, frames, size = blocks.shape
    out = F.fold(blocks.transpose(1, 2), output_size=(1, (frames - 1) * hop + size),
                 kernel_size=(1, size), stride=(1, hop))
    return out.view(b, -1)


def noise_audio(magnitudes: Tensor, tail: Tensor | None = None, noise: Tensor | None = None,
                generator: torch.Generator | None = None,
                hop: int = HOP) -> tuple[Tensor, Tensor]:
    """White noise shaped per frame by a frequency-sampled FIR, overlap-added at hop H.

    Args:
        magnitudes: (B, F, N) >= 0 filter gain at N linearly spaced frequencies from 0 to
            Nyquist (N >= 2); the FIR has ``L = 2 (N - 1)`` taps and delays by ``L/2``.
        tail: (B, L - 1) overlap tail from the previous chunk, or None (silence before).
        noise: (B, F*H) source noise; None draws uniform [-1, 1) noise from ``generator``.
        generator: random source for the drawn noise (determinism).
        hop: samples per frame H.

    Returns:
        (B, F*H) audio, and the (B, L - 1) tail to pass to the next chunk.
    """
    b, frames, bands = magnitudes.shape
    if bands < 2:
        raise ValueError(f"noise needs at least 2 bands; got {bands}")
    length = 2 * (bands - 1)
    if noise is None:
        noise = torch.rand(b, frames * hop, generator=generator, device=magnitudes.device,
                           dtype=magnitudes.dtype) * 2.0 - 1.0
    if noise.shape != (b, frames * hop):
        raise ValueError(f"noise must be (B, F*H) = {(b, frames * hop)}; got {tuple(noise.shape)}")
    size = hop + length - 1
    n_fft = 1 << (size - 1).bit_length()  # a power of two >= the linear convolution's length
    spectrum = torch.fft.rfft(noise.view(b, frames, hop), n=n_fft)
    blocks = torch.fft.irfft(spectrum * _noise_transfer(magnitudes, n_fft), n=n_fft)
    out = _overlap_add(blocks[..., :size], hop)
    if tail is not None:
        if tail.shape != (b, length - 1):
            raise ValueError(f"noise tail must be (B, L-1) = {(b, length - 1)}; got "
                             f"{tuple(tail.shape)} (did the number of bands change?)")
        out = out + F.pad(tail, (0, out.shape[1] - tail.shape[1]))
    return out[:, : frames * hop], out[:, frames * hop:]


def render(controls: SynthControls, state: SynthState | None = None, *,
           noise: Tensor | None = None, generator: torch.Generator | None = None,
           sample_rate: int = SAMPLE_RATE, hop: int = HOP) -> tuple[Tensor, SynthState]:
    """Harmonic plus filtered-noise audio for one chunk of frames.

    Args:
        controls: the chunk's controls (F frames; see :class:`SynthControls`).
        state: returned by the previous chunk's render, or None at the start.
        noise: (B, F*H) noise source for this chunk, or None to draw from ``generator``.
        generator: random source when ``noise`` is None.
        sample_rate: audio rate in Hz. hop: samples per frame H.

    Returns:
        (B, F*H) audio, and the state to pass with the next chunk.
    """
    c = controls
    audio, state = harmonic_audio(c.f0, c.amplitude, c.harmonics, c.inharmonicity, state,
                                  sample_rate, hop)
    if c.noise is None:
        return audio, state
    tail = state.noise_tail if state.noise_tail.shape[-1] else None
    part, tail = noise_audio(c.noise, tail, noise, generator, hop)
    return audio + part, replace(state, noise_tail=tail)
