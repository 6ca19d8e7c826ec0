"""Chunked, batched autoregressive sampling from a streaming decoder.

A long output is cut into chunks that run **in parallel as one batch**: chunk i covers
``[i * chunk - warmup, (i + 1) * chunk)``. Its first ``warmup`` samples let the decoder's state
settle (they overlap the previous chunk) and the two chunks are crossfaded over the last ``fade``
samples of that overlap. Chunk starts are multiples of the decoder's conditioning frame
(``decoder.frame`` samples), so every chunk of a batch switches conditioning at the same step.
Every named input (:mod:`umt.nn.condition`) is sliced for each chunk at its own rate: frame
inputs by the frame that covers each position, per-sample inputs sample by sample (zeros
outside the input).

The random numbers come from one seeded CPU generator per input, one uniform per (chunk, step),
drawn before generation: how many chunks share a batch, and with which other inputs' chunks
(:func:`generate_many`), changes the output only through float rounding.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from umt import fastpath, threads
from umt.audio import mu_law_decode
from umt.nn.condition import Inputs
from umt.nn.stream import StepParams
from umt.nn.wavenet import SILENCE

Progress = Callable[[int, int], None]  # (steps done, steps in all)

# Batch caps. On CPU a step streams every weight from memory once per worker thread, so a larger
# batch amortises that, up to where the ring (1 GB at paper size and 512) crowds memory; paper,
# 2 workers, 3 runs: 512 chunks 1.11-1.27x the samples/s of 256, 1024 0.86-1.11x of 512.
MAX_BATCH = {"cpu": 512, "cuda": 4096}
MEMORY_FRACTION = 0.25  # of the available memory, for the generation buffers
# h = a / b of a generation step's cost a + b * batch: the batch at which the fixed cost equals
# the arithmetic. Fitted on 2 CPU threads, TorchScript loop, batches 32-512 (bench/generate.py's
# cached_rates): tiny 139, small 72, paper 66.
STEP_COST_BATCH = 100


@dataclass(frozen=True)
class ChunkPlan:
    """How one output of ``length`` samples is cut into chunks.

    Attributes:
        length: Output samples.
        chunk: Samples each chunk owns (a multiple of the conditioning frame).
        warmup: Samples generated before a chunk's start, overlapping the previous chunk.
        fade: Crossfade length at each seam, at most ``warmup``.
    """

    length: int
    chunk: int
    warmup: int
    fade: int

    @property
    def count(self) -> int:
        return max(1, -(-self.length // self.chunk))

    @property
    def steps(self) -> int:
        """Samples every chunk generates (the same for all, so they batch)."""
        return self.warmup + self.chunk

    def start(self, i: int) -> int:
        """Position of chunk i's first generated sample (negative for chunk 0's warm-up)."""
        return i * self.chunk - self.warmup


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def plan_chunks(
    length: int,
    frame: int,
    max_batch: int,
    chunk: int | None = None,
    warmup: int = 3200,
    fade: int = 800,
    min_chunk: int = 4000,
) -> ChunkPlan:
    """Choose chunks so that one batch covers the whole output when memory allows.

    The default chunk length minimises the modelled time. A step of a batch of ``n`` chunks
    costs about ``a + b n``: a fixed cost (per-op overhead, weights read) and the arithmetic of
    each chunk. With ``length / c`` chunks of ``warmup + c`` steps, the time is proportional to
    ``(warmup + c) * (h + length / c)``, ``h = a / b``, least at ``c = sqrt(warmup * length / h)``.

    Args:
        length: Output samples.
        frame: Samples per conditioning frame (``decoder.frame``): chunks start on frames.
        max_batch: Largest batch that fits (see :func:`max_batch`).
        chunk: Samples per chunk; default: the model's optimum, at least ``min_chunk`` and
            ``length / max_batch``. A chunk at least as long as the output means no chunking
            (one sequence, no seams).
        warmup: Warm-up samples per chunk (rounded up to whole frames).
        fade: Crossfade samples at each seam.
        min_chunk: Shortest default chunk, which bounds how many seams a second has.
    """
    warmup = _round_up(warmup, frame)
    if chunk is None:
        best = math.isqrt(warmup * length // STEP_COST_BATCH)
        lo, hi = max(frame, best // frame * frame), max(frame, _round_up(best, frame))
        best = min(lo, hi, key=lambda c: (warmup + c) * (STEP_COST_BATCH + length / c))
        chunk = max(min_chunk, best, -(-length // max_batch))
    chunk = _round_up(max(chunk, 1), frame)
    if chunk >= length:
        return ChunkPlan(length, _round_up(max(length, 1), frame), 0, 0)
    return ChunkPlan(length, chunk, warmup, min(fade, warmup))


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the OS's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def max_batch(decoder: nn.Module, steps: int, device: torch.device) -> int:
    """Largest batch of chunks that fits in a fraction of the free memory, capped."""
    fit = int(MEMORY_FRACTION * available_memory(device)) // decoder.bytes_per_stream(steps)
    return max(1, min(MAX_BATCH.get(device.type, 256), fit))


@dataclass
class Packed:
    """The inputs of several outputs laid end to end, one tensor per name.

    Attributes:
        inputs: {name: (1, C, N_name)} every output's input, concatenated along time.
        first: {name: (outputs,)} where each output's input starts in ``inputs[name]``.
        count: {name: (outputs,)} its length there (frames, or samples for per-sample inputs).
    """

    inputs: Inputs
    first: dict[str, torch.Tensor]
    count: dict[str, torch.Tensor]

    @classmethod
    def of(cls, items: list[Inputs]) -> Packed:
        names = list(items[0])
        count = {n: torch.tensor([x[n].shape[-1] for x in items]) for n in names}
        first = {n: c.cumsum(0) - c for n, c in count.items()}
        return cls({n: torch.cat([x[n] for x in items], -1) for n in names}, first, count)


def chunk_frame(decoder: nn.Module, packed: Packed, rows: torch.Tensor, starts: torch.Tensor,
                f: int) -> Inputs:
    """Conditioning frame ``f`` of a batch of chunks, every input sliced at its own rate.

    Args:
        decoder: The decoder (its conditioner says each input's hop).
        packed: The inputs of all outputs.
        rows: (B,) the output each chunk belongs to.
        starts: (B,) each chunk's first position (a multiple of ``decoder.frame``; may be
            negative).
        f: Conditioning frame within the chunks.

    Returns:
        {name: (B, C, 1)} for per-frame inputs (the frame covering the position, clamped to
        the output's first and last frame) and (B, C, frame) for per-sample ones (zeros outside
        the output).
    """
    P, out = decoder.frame, {}
    pos = starts + f * P  # (B,) first position of the frame
    for spec in decoder.condition.specs:
        x, first = packed.inputs[spec.name][0], packed.first[spec.name].to(pos.device)[rows]
        count = packed.count[spec.name].to(pos.device)[rows]
        if spec.hop > 1:
            idx = torch.div(pos, spec.hop, rounding_mode="floor")
            idx = torch.minimum(torch.maximum(idx, torch.zeros_like(idx)), count - 1)
            out[spec.name] = x[:, first + idx].t().unsqueeze(-1)  # (B, C, 1)
        else:
            idx = pos[:, None] + torch.arange(P, device=pos.device)  # (B, P)
            inside = (idx >= 0) & (idx < count[:, None])
            idx = first[:, None] + torch.minimum(idx.clamp_min(0), count[:, None] - 1)
            out[spec.name] = (x[:, idx] * inside).transpose(0, 1)  # (B, C, P)
    return out


def generate_group(
    decoder: nn.Module,
    packed: Packed,
    rows: torch.Tensor,
    starts: torch.Tensor,
    noise: torch.Tensor,
    temperature: float,
    progress: Callable[[int], None] | None = None,
    fast: bool = True,
    params: StepParams | None = None,
) -> torch.Tensor:
    """Sample a batch of chunks in lock-step.

    Args:
        decoder: The target domain's decoder.
        packed: The inputs of the outputs the chunks belong to (:class:`Packed`).
        rows: (B,) the output of each chunk.
        starts: (B,) first position of each chunk, multiples of ``decoder.frame`` (may be
            negative).
        noise: (B, steps) uniforms; ``steps`` must be a multiple of ``decoder.frame``.
        temperature: Sampling temperature.
        progress: Called with the number of steps just done, once per conditioning frame.
        fast: Run each frame's steps in the TorchScript loop (:mod:`umt.fastpath`) when it
            compiles, else the same loop in Python: the same classes, more interpreter overhead.
        params: The decoder's ``step_params()``, when several groups share one.

    Returns:
        (B, steps) int64 mu-law classes.
    """
    B, steps = noise.shape
    P, dev = decoder.frame, starts.device
    noise = noise.t().contiguous().to(dev)  # (steps, B): row t is read at step t
    out = torch.empty(steps, B, dtype=torch.long, device=dev)
    prev = torch.full((B,), SILENCE, dtype=torch.long, device=dev)
    # A stream of its own, not the module's: worker threads share the decoder.
    st = decoder.new_stream(B, params)
    with torch.inference_mode(), threads.cpu_threads(B, dev):
        for f in range(steps // P):
            frame = chunk_frame(decoder, packed, rows, starts, f)
            st.set_condition(*decoder.frame_condition(frame))
            span = slice(f * P, (f + 1) * P)
            prev = fastpath.run_frame(st, prev, noise[span], out[span], temperature, fast)
            if progress is not None:
                progress(P)
    return out.t()


def stitch(audio: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """Overlap-add the chunks with equal-power crossfades (chunks are independent samples).

    Args:
        audio: (count, steps) float audio of each chunk.

    Returns:
        (length,) float audio.
    """
    count, steps = audio.shape
    w = torch.ones(steps)
    if plan.fade:
        x = (torch.arange(plan.fade) + 0.5) / plan.fade * (math.pi / 2)
        w[: plan.warmup - plan.fade] = 0
        w[plan.warmup - plan.fade : plan.warmup] = torch.sin(x)
    out = torch.zeros(plan.count * plan.chunk + steps)
    for i in range(count):
        wi = w.clone()
        if plan.fade and i < count - 1:
            wi[steps - plan.fade :] = torch.cos(x)
        a = plan.start(i) + plan.warmup  # shift so that position -warmup maps to index 0
        out[a : a + steps] += wi * audio[i].cpu()
    # Equal-power fades can sum above full scale where the two chunks happen to agree.
    return out[plan.warmup : plan.warmup + plan.length].clamp_(-1, 1)


def generate(
    decoder: nn.Module,
    inputs: Inputs,
    plan: ChunkPlan,
    *,
    seed: int | None = 0,
    temperature: float = 1.0,
    batch: int | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> torch.Tensor:
    """Translate one output's conditioning inputs into audio, all chunks batched.

    Args:
        decoder: Target decoder (eval mode).
        inputs: {name: (1, C, F)} every input the decoder reads, covering ``plan.length``.
        plan: Chunking (:func:`plan_chunks`).
        seed: Seed of the sampling noise; None draws a fresh one.
        temperature: Softmax temperature (1 = the model's distribution, 0 = greedy).
        batch: Chunks per batch (default: :func:`max_batch`); more chunks run in sequence.
        progress: Called with (steps done, steps in all).
        fast: Use the TorchScript loop where it compiles (:func:`generate_group`).

    Returns:
        (length,) float32 audio on the CPU, 16 kHz.
    """
    return generate_many(decoder, [inputs], [plan], seed=seed, temperature=temperature,
                         batch=batch, progress=progress, fast=fast)[0]


def generate_many(
    decoder: nn.Module,
    inputs: list[Inputs],
    plans: list[ChunkPlan],
    *,
    seed: int | None = 0,
    temperature: float = 1.0,
    batch: int | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> list[torch.Tensor]:
    """Translate several outputs with one decoder, the chunks of all of them in shared batches.

    Short inputs make small batches, which run slowly per sample; chunks of several inputs
    with the same steps per chunk fill one batch instead. Each input keeps its own chunks and
    its own noise (drawn as :func:`generate` draws it for that input alone), so its output does
    not depend on its company, up to float rounding. On CPU with the TorchScript loop, each
    batch is shared among :func:`umt.threads.cpu_workers` threads.

    Args:
        decoder: Target decoder (eval mode).
        inputs: Per output {name: (1, C, F_k)}, covering ``plans[k].length`` samples.
        plans: Chunking of each output (:func:`plan_chunks`).
        seed: Seed of every output's sampling noise; None draws a fresh one per output.
        temperature: Softmax temperature (1 = the model's distribution, 0 = greedy).
        batch: Chunks per batch (default: :func:`max_batch`); more chunks run in sequence.
        progress: Called with (steps done, steps in all).
        fast: Use the TorchScript loop where it compiles (:func:`generate_group`).

    Returns:
        (length_k,) float32 audio of each output on the CPU, 16 kHz.
    """
    noises = []
    for plan in plans:
        gen = torch.Generator()
        gen.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
        noises.append(torch.rand(plan.count, plan.steps, generator=gen))  # (count, steps)
    packed = Packed.of(inputs)
    dev = next(iter(packed.inputs.values())).device
    # One row per chunk of every output: (output, chunk index), grouped by steps per chunk.
    groups: dict[int, list[tuple[int, int]]] = {}
    for k, plan in enumerate(plans):
        groups.setdefault(plan.steps, []).extend((k, i) for i in range(plan.count))
    total, done, lock = sum(p.count * p.steps for p in plans), 0, threading.Lock()
    params = decoder.step_params()  # one rewrite of the weights for every group and thread
    classes = [torch.empty(p.count, p.steps, dtype=torch.long) for p in plans]

    def run(rows: list[tuple[int, int]]) -> torch.Tensor:
        def tick(n: int) -> None:
            nonlocal done
            with lock:
                done += n * len(rows)
                if progress is not None:
                    progress(done, total)

        k = torch.tensor([j for j, _ in rows], device=dev)
        starts = torch.tensor([plans[j].start(c) for j, c in rows], device=dev)
        noise = torch.stack([noises[j][c] for j, c in rows])
        return generate_group(decoder, packed, k, starts, noise, temperature, tick, fast, params)

    workers = threads.cpu_workers(dev, fast)
    for steps, rows in groups.items():
        cap = batch or max_batch(decoder, steps, dev)
        for g in range(0, len(rows), cap):
            part = rows[g : g + cap]
            shares = [s for s in threads._split(part, workers) if s]
            if len(shares) == 1:
                q = run(shares[0])
            else:
                with threads.intra_op_threads(1), ThreadPoolExecutor(len(shares)) as pool:
                    q = torch.cat(list(pool.map(run, shares)))
            for (k, i), row in zip(part, q.cpu(), strict=True):
                classes[k][i] = row
    return [stitch(mu_law_decode(q).float(), plan) for q, plan in zip(classes, plans, strict=True)]

