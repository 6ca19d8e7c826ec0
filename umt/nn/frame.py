"""The ``frame`` decoder kind: autoregressive over frames, rendered by a harmonic-plus-noise synth.

Per frame (100 frames/s at hop 160), a GRU cell reads the conditioning (latent, notes,
loudness, ...: :mod:`umt.nn.condition`) and its own previous frame's controls; per voice (one
harmonic bank per sounding note, :mod:`umt.nn.voices`), a shared head turns the GRU state and
the voice's pitch, onset and age into an amplitude, a harmonic distribution and an
inharmonicity (stiff strings); a noise head gives a filter for the noise part. The controls go
to :func:`umt.nn.synth.render`. The voice's age since its onset is a feature, so a decoder can
learn its instrument's envelope (a piano strikes and decays) instead of copying the source's.

Streaming: :meth:`FrameDecoder.generate` takes and returns a :class:`FrameState` (GRU state,
last controls, voices, synth phases and noise tail), so consecutive chunks give exactly the
one-call output; teacher forcing and generation are the same computation (nothing is sampled
but the noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from umt.config import FrameDecoderConfig
from umt.errors import UmtError
from umt.features import NOTES
from umt.losses import multi_resolution_stft_loss
from umt.nn.condition import Conditioner, Inputs, InputSpec
from umt.nn.notes import THRESHOLD
from umt.nn.synth import SynthControls, SynthState, render
from umt.nn.voices import FEATURES as VOICE_FEATURES
from umt.nn.voices import KEYS, VoiceState, allocate


@dataclass
class FrameState:
    """What carries generation across a chunk seam."""

    hidden: torch.Tensor  # (B, H) GRU state
    prev: torch.Tensor  # (B, V + 1) last frame's log amplitudes and log noise level
    voices: VoiceState
    synth: SynthState | None


def scaled_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """DDSP's positive amplitude nonlinearity: 2 sigmoid(x)^ln(10) + 1e-7."""
    return 2 * torch.sigmoid(x) ** math.log(10) + 1e-7


class FrameDecoder(nn.Module):
    """GRU over frames -> per-voice harmonic controls and a noise filter -> audio.

    Args:
        cfg: Sizes.
        inputs: Conditioning inputs; one must be the ``notes`` input (it places the voices).
    """

    def __init__(self, cfg: FrameDecoderConfig, inputs: list[InputSpec]) -> None:
        super().__init__()
        notes = [s for s in inputs if s.feature == NOTES]
        if len(notes) != 1:
            raise UmtError("the frame decoder needs one `notes` input in model.condition")
        if notes[0].hop != cfg.hop:
            raise UmtError(f"the frame decoder's hop ({cfg.hop}) must be the notes' hop "
                           f"({notes[0].hop})")
        if any(s.hop % cfg.hop for s in inputs):  # per-sample inputs (hop 1) fail this too
            raise UmtError(f"the frame decoder's inputs must be per frame at a multiple of its "
                           f"hop {cfg.hop}; got {[(s.name, s.hop) for s in inputs]}")
        self.cfg, self.notes = cfg, notes[0].name
        H, V, K = cfg.hidden, cfg.voices, cfg.harmonics
        self.condition = Conditioner(inputs, 1, H, 1, frame=cfg.hop)
        self.prev_in = nn.Linear(V + 1, H)
        self.gru = nn.GRUCell(H, H)
        self.voice = nn.Sequential(nn.Linear(H + VOICE_FEATURES, H), nn.LeakyReLU(0.1),
                                   nn.Linear(H, 2 + K))
        self.noise = nn.Linear(H, cfg.noise_bands)
        with torch.no_grad():  # start quiet: a loud random start makes the spectral loss spiky
            self.voice[-1].bias[0] = -2.0
            self.noise.bias.fill_(-4.0)

    @property
    def frame(self) -> int:
        """Samples per frame: the conditioning changes, and the GRU steps, every ``frame``."""
        return self.cfg.hop

    @property
    def receptive_field(self) -> int:
        """1: nothing but the noise is sampled, so a chunk needs no warm-up at a seam."""
        return 1

    def start(self, batch: int, like: torch.Tensor) -> FrameState:
        """The state before the first frame."""
        zeros = like.new_zeros
        return FrameState(zeros(batch, self.cfg.hidden), zeros(batch, self.cfg.voices + 1),
                          VoiceState.start(batch, self.cfg.voices), None)

    def controls(self, inputs: Inputs, frames: int,
                 state: FrameState) -> tuple[SynthControls, FrameState]:
        """The synth controls of ``frames`` frames, continuing from ``state``.

        Args:
            inputs: {name: (B, C, F_name)} covering the frames (``notes``: (B, 176, F)).
            frames: Frames to make.
            state: From :meth:`start` or the previous chunk.

        Returns:
            The chunk's controls ((B, frames, ...) tensors) and the state after it.
        """
        cond = self.condition.frames(inputs, frames)[:, :, 0]  # (F, B, H)
        notes = inputs[self.notes][..., :frames].detach().cpu().numpy() > THRESHOLD
        voices, voice_state = allocate(notes[:, :KEYS], notes[:, KEYS:], self.cfg.voices,
                                       state.voices)
        feats = voices.features(cond)  # (B, F, V, 6)
        h, prev = state.hidden, state.prev
        amps, harms, inharm, noise = [], [], [], []
        for f in range(frames):
            h = self.gru(cond[f] + self.prev_in(prev), h)  # (B, H)
            per_voice = torch.cat([h[:, None].expand(-1, feats.shape[2], -1), feats[:, f]], -1)
            out = self.voice(per_voice)  # (B, V, 2 + K)
            amp = scaled_sigmoid(out[..., 0]) * feats[:, f, :, 1]  # silent voices: 0
            nz = scaled_sigmoid(self.noise(h))  # (B, N)
            amps.append(amp)
            harms.append(torch.softmax(out[..., 2:], -1))
            inharm.append(1e-4 * F.softplus(out[..., 1]))
            noise.append(nz)
            prev = torch.cat([torch.log(amp + 1e-5), torch.log(nz.mean(-1, keepdim=True))], -1)
        c = SynthControls(f0=voices.f0(cond), amplitude=torch.stack(amps, 1),
                          harmonics=torch.stack(harms, 1), noise=torch.stack(noise, 1),
                          inharmonicity=torch.stack(inharm, 1))
        return c, FrameState(h, prev, voice_state, state.synth)

    def generate(self, inputs: Inputs, frames: int, state: FrameState | None = None,
                 generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> tuple[torch.Tensor, FrameState]:
        """Audio of ``frames`` frames, continuing from ``state`` (None: the start).

        Args:
            inputs: {name: (B, C, F_name)} covering the frames.
            frames: Frames to render (``frames * hop`` samples).
            state: The previous chunk's state.
            generator: Random source of the noise part.
            noise: (B, frames * hop) noise source instead of ``generator``.

        Returns:
            (B, frames * hop) audio and the state after the chunk.
        """
        B = next(iter(inputs.values())).shape[0]
        like = next(self.parameters())
        state = state or self.start(B, like)
        c, state = self.controls(inputs, frames, state)
        audio, synth = render(c, state.synth, noise=noise, generator=generator, hop=self.cfg.hop)
        return audio, FrameState(state.hidden, state.prev, state.voices, synth)

    def forward(self, length: int, inputs: Inputs) -> torch.Tensor:
        """Audio for ``length`` samples from the start: (B, length)."""
        frames = -(-length // self.cfg.hop)
        return self.generate(inputs, frames)[0][:, :length]

    def loss(self, target: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Multi-resolution spectral distance of the rendered audio to ``target`` (B, T)."""
        return multi_resolution_stft_loss(self(target.shape[-1], inputs), target)
