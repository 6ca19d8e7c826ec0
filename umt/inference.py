"""The library API of translation: ``Translator.load(path)(wav, sr, to="piano")``.

The encoder runs once per input (in overlapping windows, so a 10-minute file needs bounded
memory), then each target decoder samples the whole output as one batch of chunks
(:mod:`umt.generate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plumbing.device import resolve_device, use_bf16  # callers import resolve_device from here
from umt.audio import SAMPLE_RATE, resample
from umt.checkpoint import check_instruments, export_defaults, load_export
from umt.config import PITCH_SOURCES
from umt.errors import UmtError
from umt.generate import ChunkPlan, Progress, generate_many, max_batch, plan_chunks
from umt.model import UniversalTranslator
from umt.nn.decoders import frame_level

SILENT_PEAK = 1e-4  # -80 dBFS: quieter than 16-bit dither, nothing to translate
ENCODER_WINDOW_FRAMES = 400  # 20 s of audio per encoder pass
# The default warm-up's ceiling (0.2 s, the warm-up of every decoder before 2026-11-28): a
# warm-up of field + fade would add 0.31 s of generation to every chunk at paper size (field 4093
# samples) and 4.1 s at release size (65533).
MAX_AUTO_WARMUP = 3200
FRAME_CHUNK_SECONDS = 10.0  # a frame decoder's chunk: its synth holds ~V*K floats a sample


def spec_hop(decoder: torch.nn.Module, name: str) -> int:
    """Samples per frame of the decoder's input ``name``."""
    return decoder.condition.spec(name).hop


def check_audio(wav: np.ndarray, name: str = "input") -> np.ndarray:
    """The signal as float32 (T,), or a UmtError if it is empty, silent or not finite."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:  # (T, channels), as soundfile reads it
        wav = wav.mean(axis=1)
    if wav.ndim != 1:
        raise UmtError(f"{name}: expected mono audio of shape (T,), got {wav.shape}")
    if wav.size == 0:
        raise UmtError(f"{name} is empty (no samples)")
    if not np.isfinite(wav).all():
        raise UmtError(f"{name} holds NaN or infinite samples")
    if float(np.abs(wav).max()) < SILENT_PEAK:
        raise UmtError(f"{name} is silent (peak below -80 dBFS): nothing to translate")
    return wav


@dataclass
class Latent:
    """What the decoders read of one input: the named conditioning inputs {name: (1, C, F)}
    (the latent ``z`` and any features, :mod:`umt.nn.condition`) and the output length."""

    inputs: dict[str, torch.Tensor]
    length: int

    @property
    def z(self) -> torch.Tensor:
        """The encoder's latent (1, D, F): the input named ``z`` (the configs' name for it)."""
        if "z" not in self.inputs:
            raise KeyError("this model names its latent otherwise; read Latent.inputs")
        return self.inputs["z"]


@dataclass(frozen=True)
class GenerationPlan:
    """How one decoder generates one output: its chunks, and the most chunks generated at once
    (the rows of a batch, shared by the inputs of a :meth:`Translator.decode_many` call)."""

    chunks: ChunkPlan
    batch: int


class Translator:
    """Translate audio into any instrument of an exported model.

    Args:
        model: The model, in eval mode.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        chunk_seconds: Chunk length; default: the length that :func:`umt.generate.plan_chunks`
            models as fastest, at least ``min_chunk_seconds`` and long enough that the chunks fit
            one batch in memory. ``inf`` disables chunking.
        warmup_seconds: Warm-up overlap of each chunk with the previous one; default: the
            decoder's receptive field plus the fade, at most 0.2 s, so that where a seam's
            crossfade starts the chunk's state holds only samples it generated itself.
        fade_seconds: Crossfade at each seam (at most the warm-up).
        batch: Chunks generated at once (default: what fits in a quarter of the free memory).
        min_chunk_seconds: Shortest default chunk: it bounds the seams per second. Short
            chunks make a bigger batch of a short input, which runs faster per sample
            (docs/translate.md has the measurements).
        fast: Generate in the TorchScript loop (:mod:`umt.fastpath`); False forces eager mode.
        pitch: Where a decoder that reads notes gets them: ``head`` (the note head on the
            encoder), ``tracker`` (torchcrepe's f0, one line: :mod:`umt.tracker`), ``chords``
            (that line plus constant-Q notes: :mod:`umt.chords`) or ``auto`` (chords for a
            file where notes sound together, else the line).
        temperature: Sampling temperature when a call gives none (1 = the model's
            distribution, 0 = greedy).
        precision: The encoder and note head's arithmetic: ``auto`` (bf16 autocast where the
            hardware has it: CUDA, AVX512-BF16 or AMX CPUs; 6x faster on this project's CPU,
            latents within 0.4 %), ``bf16`` or ``fp32``. Decoders always run in float32.
    """

    def __init__(
        self,
        model: UniversalTranslator,
        device: str | torch.device = "auto",
        *,
        chunk_seconds: float | None = None,
        warmup_seconds: float | None = None,
        fade_seconds: float = 0.05,
        batch: int | None = None,
        min_chunk_seconds: float = 0.25,
        fast: bool = True,
        pitch: str = "head",
        temperature: float = 1.0,
        precision: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.chunk_seconds, self.batch = chunk_seconds, batch
        self.warmup = None if warmup_seconds is None else int(warmup_seconds * SAMPLE_RATE)
        self.fade = int(fade_seconds * SAMPLE_RATE)
        self.min_chunk = int(min_chunk_seconds * SAMPLE_RATE)
        self.fast = fast
        if pitch not in PITCH_SOURCES:
            raise UmtError(f"pitch must be one of {', '.join(PITCH_SOURCES)}, not {pitch!r}")
        if pitch != "head" and not self.model.reads_notes:
            raise UmtError(f"--pitch {pitch} needs a model whose decoders read notes (a frame "
                           "model); this one reads none")
        self.pitch = pitch
        if temperature < 0:
            raise UmtError(f"temperature must be >= 0, not {temperature}")
        self.temperature = temperature
        self.bf16 = use_bf16(precision, self.device)

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        domains: list[str] | None = None,
        **options,
    ) -> Translator:
        """Load an export (``python -m umt.export``) with the decoders asked for (default all).

        ``pitch`` and ``temperature`` (see the class) default to what the export recommends
        (``defaults`` in the file, set by ``python -m umt.export --pitch/--temperature`` from
        validation), else ``head`` and 1.

        Raises:
            UmtError: not a umt export, another format version, or an unknown instrument.
        """
        device = resolve_device(device)
        defaults = export_defaults(path)
        for key, fallback in (("pitch", "head"), ("temperature", 1.0)):
            if options.get(key) is None:
                options[key] = defaults.get(key, fallback)
        return cls(load_export(path, domains=domains), device, **options)

    @property
    def domains(self) -> list[str]:
        """Instruments this translator can produce."""
        return self.model.domains

    def encode(self, wav: np.ndarray, sr: int) -> Latent:
        """Run the encoder and the feature extractors once over an input.

        Args:
            wav: (T,) or (T, channels) float audio at ``sr``.
            sr: Its sample rate.

        Returns:
            The inputs of the decoders, among them the latent (1, D, ceil(T16 / pool)), T16
            the length at 16 kHz.
        """
        x = torch.from_numpy(resample(check_audio(wav), sr, SAMPLE_RATE)).to(self.device)
        enc = self.model.cfg.encoder
        pool, T = enc.pool, x.shape[0]
        # Samples that reach one output of the encoder: its start conv and the dilated stack.
        radius = (enc.kernel // 2) * (1 + enc.blocks * (2**enc.layers - 1))
        margin = -(-radius // pool) * pool
        tracker = self.pitch != "head" and self.model.reads_notes
        head = self.model.reads_notes and not tracker
        hop = self.model.cfg.notes.hop  # divides pool: windows start on note frames too
        frames, parts, heads = -(-T // pool), [], []
        with torch.inference_mode():
            for f0 in range(0, frames, ENCODER_WINDOW_FRAMES):
                f1 = min(frames, f0 + ENCODER_WINDOW_FRAMES)
                a, b = max(0, f0 * pool - margin), min(T, f1 * pool + margin)
                # (1, D, frames of the window), (1, 176, note frames of the window) or None
                with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                    z, logits = self.model.encode_notes(x[a:b].unsqueeze(0), notes=head)
                z, logits = z.float(), None if logits is None else logits.float()
                parts.append(z[..., f0 - a // pool : f1 - a // pool])
                if head:
                    first = (f0 * pool - a) // hop
                    heads.append(logits[..., first : first + -(-(min(T, f1 * pool) - f0 * pool)
                                                               // hop)])
            notes = torch.sigmoid(torch.cat(heads, -1)) if head else None
            if tracker:
                from umt.chords import tracked_notes

                notes = tracked_notes(x.cpu().numpy(), -(-T // hop), self.pitch,
                                      str(self.device))
                notes = notes.to(x.device)
            inputs = self.model.condition(x.unsqueeze(0), torch.cat(parts, -1), notes)
        return Latent(inputs, T)

    def decode(
        self,
        latent: Latent,
        to: str,
        *,
        seed: int | None = 0,
        temperature: float | None = None,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Sample the target instrument's audio for a latent.

        Returns:
            (T16,) float32 audio at 16 kHz on the CPU.
        """
        return self.decode_many([latent], to, seed=seed, temperature=temperature,
                                progress=progress)[0]

    def decode_many(
        self,
        latents: list[Latent],
        to: str,
        *,
        seed: int | None = 0,
        temperature: float | None = None,
        progress: Progress | None = None,
    ) -> list[torch.Tensor]:
        """Sample instrument ``to`` for several latents, their chunks sharing batches.

        Short inputs fill few rows of a batch each; together they run several times faster.
        Each output is what :meth:`decode` gives for its latent alone, up to float rounding.

        Returns:
            (T16_k,) float32 audio at 16 kHz on the CPU, one per latent.
        """
        check_instruments([to], self.domains)
        temperature = self.temperature if temperature is None else temperature
        decoder = self.model.decoders[to]
        if frame_level(decoder):
            return [self._decode_frames(decoder, lat, seed, progress) for lat in latents]
        plans = [self.plan(to, latent.length) for latent in latents]
        return generate_many(self.model.decoders[to], [latent.inputs for latent in latents],
                             [plan.chunks for plan in plans], seed=seed, temperature=temperature,
                             batch=plans[0].batch, progress=progress, fast=self.fast)

    def _decode_frames(self, decoder: torch.nn.Module, latent: Latent, seed: int | None,
                       progress: Progress | None) -> torch.Tensor:
        """A frame decoder's output, rendered in consecutive chunks with its state carried
        (the same audio as one call; memory bounded by the chunk)."""
        hop = decoder.frame
        frames = -(-latent.length // hop)
        chunk = FRAME_CHUNK_SECONDS if self.chunk_seconds is None else self.chunk_seconds
        # Chunks start on a frame of every input (the latent's 800 samples are 5 frames).
        unit = math.lcm(*(spec.hop for spec in decoder.condition.specs)) // hop
        step = max(unit, int(min(chunk, 3600) * SAMPLE_RATE) // hop // unit * unit)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
        state, parts = None, []
        with torch.inference_mode():
            for f0 in range(0, frames, step):
                n = min(step, frames - f0)
                window = {k: v[..., f0 * hop // spec_hop(decoder, k):]
                          for k, v in latent.inputs.items()}
                audio, state = decoder.generate(window, n, state, generator=gen)
                parts.append(audio[0].float().cpu())
                if progress is not None:
                    progress(f0 + n, frames)
        return torch.cat(parts)[: latent.length]

    def plan(self, to: str, length: int) -> GenerationPlan:
        """How instrument ``to``'s decoder generates ``length`` samples: the chunks, and the
        most chunks generated at once. A frame decoder runs each output as one sequence
        (consecutive chunks with its state carried, :meth:`_decode_frames`): one row."""
        decoder = self.model.decoders[to]
        if frame_level(decoder):
            whole = -(-max(length, 1) // decoder.frame) * decoder.frame
            return GenerationPlan(ChunkPlan(length, whole, 0, 0), 1)
        warmup = self.warmup
        if warmup is None:
            warmup = min(MAX_AUTO_WARMUP, decoder.receptive_field + self.fade)
        chunk = None if self.chunk_seconds is None else self.chunk_seconds * SAMPLE_RATE
        chunk = length if chunk is not None and chunk >= length else chunk
        cap = self.batch or max_batch(decoder, self.min_chunk + warmup, self.device)
        chunks = plan_chunks(length, decoder.frame, cap, None if chunk is None else int(chunk),
                             warmup, self.fade, self.min_chunk)
        return GenerationPlan(chunks, cap)

    def translate(
        self,
        wav: np.ndarray,
        sr: int,
        targets: list[str],
        *,
        seed: int | None = 0,
        temperature: float | None = None,
        progress: Progress | None = None,
    ) -> dict[str, torch.Tensor]:
        """Translate one input into several instruments, running the encoder once.

        Returns:
            ``{instrument: (T16,) float32 audio at 16 kHz}``.
        """
        check_instruments(targets, self.domains)
        latent = self.encode(wav, sr)
        return {
            to: self.decode(latent, to, seed=seed, temperature=temperature, progress=progress)
            for to in targets
        }

    def __call__(
        self,
        wav: np.ndarray,
        sr: int,
        to: str,
        seed: int | None = 0,
        temperature: float | None = None,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Translate ``wav`` (T,) at ``sr`` into instrument ``to``: (T16,) float32 at 16 kHz."""
        return self.translate(wav, sr, [to], seed=seed, temperature=temperature,
                              progress=progress)[to]
