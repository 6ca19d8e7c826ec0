"""Chunked, batched autoregressive sampling from a streaming WaveNet decoder.

A long output is cut into chunks that run **in parallel as one batch**: chunk i covers
``[i * chunk - warmup, (i + 1) * chunk)``. Its first ``warmup`` samples let the decoder's state
settle (they overlap the previous chunk) and the two chunks are crossfaded over the last ``fade``
samples of that overlap. Chunk starts are multiples of the latent frame (``pool`` samples), so
every chunk of a batch switches conditioning frame at the same step.

The random numbers come from one seeded CPU generator per input, one uniform per (chunk, step),
drawn before generation: how many chunks share a batch, and with which other inputs' chunks
(:func:`generate_many`), changes the output only through float rounding.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from umt import fastpath
from umt.audio import mu_law_decode
from umt.nn.stream import StepParams, Stream, step_params
from umt.nn.wavenet import SILENCE, Decoder

Progress = Callable[[int, int], None]  # (steps done, steps in all)

# Batch caps. On CPU a step streams every weight from memory once per worker thread, so a larger
# batch amortises that, up to where the ring (1 GB at paper size and 512) crowds memory; paper,
# 2 workers, 3 runs: 512 chunks 1.11-1.27x the samples/s of 256, 1024 0.86-1.11x of 512.
MAX_BATCH = {"cpu": 512, "cuda": 4096}
MEMORY_FRACTION = 0.25  # of the available memory, for the generation buffers
# Below this batch a step's matmuls are too small to split across CPU threads, and every split
# op syncs the threads: on a loaded 2-core machine, paper size at batch 1 ran at 1.7 samples/s
# with 2 threads and 171 samples/s with 1 (bench/generate.py).
SINGLE_THREAD_BELOW = 32
# h = a / b of a generation step's cost a + b * batch: the batch at which the fixed cost equals
# the arithmetic. Fitted on 2 CPU threads, TorchScript loop, batches 32-512 (bench/generate.py's
# cached_rates): tiny 139, small 72, paper 66.
STEP_COST_BATCH = 100


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore torch's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def cpu_threads(batch: int, device: torch.device) -> Iterator[None]:
    """One intra-op thread for small CPU batches, torch's setting otherwise."""
    small = device.type == "cpu" and batch < SINGLE_THREAD_BELOW
    with intra_op_threads(1 if small else torch.get_num_threads()):
        yield


@dataclass(frozen=True)
class ChunkPlan:
    """How one output of ``length`` samples is cut into chunks.

    Attributes:
        length: Output samples.
        chunk: Samples each chunk owns (a multiple of the latent frame).
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
    pool: int,
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
        pool: Samples per latent frame.
        max_batch: Largest batch that fits (see :func:`max_batch`).
        chunk: Samples per chunk; default: the model's optimum, at least ``min_chunk`` and
            ``length / max_batch``. A chunk at least as long as the output means no chunking
            (one sequence, no seams).
        warmup: Warm-up samples per chunk (rounded up to whole frames).
        fade: Crossfade samples at each seam.
        min_chunk: Shortest default chunk, which bounds how many seams a second has.
    """
    warmup = _round_up(warmup, pool)
    if chunk is None:
        best = math.isqrt(warmup * length // STEP_COST_BATCH)
        lo, hi = max(pool, best // pool * pool), max(pool, _round_up(best, pool))
        best = min(lo, hi, key=lambda c: (warmup + c) * (STEP_COST_BATCH + length / c))
        chunk = max(min_chunk, best, -(-length // max_batch))
    chunk = _round_up(max(chunk, 1), pool)
    if chunk >= length:
        return ChunkPlan(length, _round_up(max(length, 1), pool), 0, 0)
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


def bytes_per_chunk(decoder: Decoder, steps: int) -> int:
    """Memory one chunk of a batch needs while generating ``steps`` samples."""
    cfg, layers = decoder.cfg, len(decoder.layers)
    # The ring holds dilation + 1 rows of R floats per layer (umt.nn.stream.Stream).
    ring = (decoder.receptive_field - 1 + layers) * cfg.residual
    per_step = layers * 2 * cfg.gate + 3 * cfg.gate + 2 * cfg.skip + 4 * cfg.classes
    return 4 * (ring + per_step) + 12 * steps  # + sampled classes (int64) and uniforms


def max_batch(decoder: Decoder, steps: int, device: torch.device) -> int:
    """Largest batch of chunks that fits in a fraction of the free memory, capped."""
    fit = int(MEMORY_FRACTION * available_memory(device)) // bytes_per_chunk(decoder, steps)
    return max(1, min(MAX_BATCH.get(device.type, 256), fit))


def _frames(z: torch.Tensor, starts: torch.Tensor, f: int, pool: int,
            spans: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Latent frame ``f`` of each chunk: z (1, D, F), starts (B,) -> (B, D, 1).

    ``spans`` = (first, last) (B,) frames of each chunk's own input, where ``z`` holds several
    inputs end to end; frames before or after an input repeat its first or last frame."""
    idx = torch.div(starts, pool, rounding_mode="floor") + f
    if spans is None:
        return z[0][:, idx.clamp_(0, z.shape[-1] - 1)].t().unsqueeze(-1)
    first, last = spans
    return z[0][:, torch.minimum(torch.maximum(idx + first, first), last)].t().unsqueeze(-1)


def generate_group(
    decoder: Decoder,
    z: torch.Tensor,
    starts: torch.Tensor,
    noise: torch.Tensor,
    temperature: float,
    progress: Callable[[int], None] | None = None,
    fast: bool = True,
    params: StepParams | None = None,
    spans: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sample a batch of chunks in lock-step.

    Args:
        decoder: The target domain's decoder.
        z: (1, D, F) latent of the whole input.
        starts: (B,) first position of each chunk, multiples of ``pool`` (may be negative).
        noise: (B, steps) uniforms; ``steps`` must be a multiple of ``pool``.
        temperature: Sampling temperature.
        progress: Called with the number of steps just done, once per latent frame.
        fast: Run each frame's steps in the TorchScript loop (:mod:`umt.fastpath`) when it
            compiles, else the same loop in Python: the same classes, more interpreter overhead.
        params: The decoder's :func:`~umt.nn.stream.step_params`, when several groups share one.
        spans: (first, last) (B,) frames of each chunk's input in ``z``, when ``z`` holds the
            latents of several inputs end to end (:func:`generate_many`); default: all of it.

    Returns:
        (B, steps) int64 mu-law classes.
    """
    B, steps = noise.shape
    pool, dev = decoder.pool, z.device
    noise = noise.t().contiguous().to(dev)  # (steps, B): row t is read at step t
    out = torch.empty(steps, B, dtype=torch.long, device=dev)
    prev = torch.full((B,), SILENCE, dtype=torch.long, device=dev)
    # A stream of its own, not the module's: worker threads share the decoder.
    st = Stream(decoder, B, params)
    with torch.inference_mode(), cpu_threads(B, dev):
        for f in range(steps // pool):
            st.set_condition(decoder.project_condition(_frames(z, starts, f, pool, spans))[0])
            rows = slice(f * pool, (f + 1) * pool)
            prev = fastpath.run_frame(st, prev, noise[rows], out[rows], temperature, fast)
            if progress is not None:
                progress(pool)
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
    decoder: Decoder,
    z: torch.Tensor,
    plan: ChunkPlan,
    *,
    seed: int | None = 0,
    temperature: float = 1.0,
    batch: int | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> torch.Tensor:
    """Translate a latent into audio with one decoder, all chunks batched.

    Args:
        decoder: Target decoder (eval mode).
        z: (1, D, F) latent, F >= ceil(plan.length / pool).
        plan: Chunking (:func:`plan_chunks`).
        seed: Seed of the sampling noise; None draws a fresh one.
        temperature: Softmax temperature (1 = the model's distribution, 0 = greedy).
        batch: Chunks per batch (default: :func:`max_batch`); more chunks run in sequence.
        progress: Called with (steps done, steps in all).
        fast: Use the TorchScript loop where it compiles (:func:`generate_group`).

    Returns:
        (length,) float32 audio on the CPU, 16 kHz.
    """
    return generate_many(decoder, [z], [plan], seed=seed, temperature=temperature, batch=batch,
                         progress=progress, fast=fast)[0]


def generate_many(
    decoder: Decoder,
    zs: list[torch.Tensor],
    plans: list[ChunkPlan],
    *,
    seed: int | None = 0,
    temperature: float = 1.0,
    batch: int | None = None,
    progress: Progress | None = None,
    fast: bool = True,
) -> list[torch.Tensor]:
    """Translate several latents with one decoder, the chunks of all of them in shared batches.

    Short inputs make small batches, which run slowly per sample; chunks of several inputs
    with the same steps per chunk fill one batch instead. Each input keeps its own chunks and
    its own noise (drawn as :func:`generate` draws it for that input alone), so its output does
    not depend on its company, up to float rounding. On CPU with the TorchScript loop, each
    batch is shared among :func:`cpu_workers` threads.

    Args:
        decoder: Target decoder (eval mode).
        zs: (1, D, F_k) latent of each input, F_k >= ceil(plans[k].length / pool).
        plans: Chunking of each input (:func:`plan_chunks`).
        seed: Seed of every input's sampling noise; None draws a fresh one per input.
        temperature: Softmax temperature (1 = the model's distribution, 0 = greedy).
        batch: Chunks per batch (default: :func:`max_batch`); more chunks run in sequence.
        progress: Called with (steps done, steps in all).
        fast: Use the TorchScript loop where it compiles (:func:`generate_group`).

    Returns:
        (length_k,) float32 audio of each input on the CPU, 16 kHz.
    """
    noises = []
    for plan in plans:
        gen = torch.Generator()
        gen.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
        noises.append(torch.rand(plan.count, plan.steps, generator=gen))  # (count, steps)
    z = torch.cat(zs, -1)
    sizes = torch.tensor([x.shape[-1] for x in zs])
    last = sizes.cumsum(0) - 1  # (inputs,) each input's frames in z: first[k]..last[k]
    first = last + 1 - sizes
    # One row per chunk of every input: (input, chunk index), grouped by steps per chunk.
    groups: dict[int, list[tuple[int, int]]] = {}
    for k, plan in enumerate(plans):
        groups.setdefault(plan.steps, []).extend((k, i) for i in range(plan.count))
    total, done, lock = sum(p.count * p.steps for p in plans), 0, threading.Lock()
    params = step_params(decoder)  # one rewrite of the weights for every group and thread
    classes = [torch.empty(p.count, p.steps, dtype=torch.long) for p in plans]

    def run(rows: list[tuple[int, int]]) -> torch.Tensor:
        def tick(n: int) -> None:
            nonlocal done
            with lock:
                done += n * len(rows)
                if progress is not None:
                    progress(done, total)

        k = torch.tensor([j for j, _ in rows])
        starts = torch.tensor([plans[j].start(c) for j, c in rows], device=z.device)
        noise = torch.stack([noises[j][c] for j, c in rows])
        spans = (first[k].to(z.device), last[k].to(z.device))
        return generate_group(decoder, z, starts, noise, temperature, tick, fast, params, spans)

    workers = cpu_workers(z.device, fast)
    for steps, rows in groups.items():
        cap = batch or max_batch(decoder, steps, z.device)
        for g in range(0, len(rows), cap):
            part = rows[g : g + cap]
            shares = [s for s in _split(part, workers) if s]
            if len(shares) == 1:
                q = run(shares[0])
            else:
                with intra_op_threads(1), ThreadPoolExecutor(len(shares)) as pool:
                    q = torch.cat(list(pool.map(run, shares)))
            for (k, i), row in zip(part, q.cpu(), strict=True):
                classes[k][i] = row
    return [stitch(mu_law_decode(q).float(), plan) for q, plan in zip(classes, plans, strict=True)]


def _split(rows: list, n: int) -> list[list]:
    """``rows`` in ``n`` contiguous shares of near-equal sizes, as ``tensor_split`` cuts."""
    return [[rows[j] for j in part.tolist()] for part in torch.arange(len(rows)).tensor_split(n)]


def cpu_workers(device: torch.device, fast: bool) -> int:
    """Threads that generate shares of a CPU batch at once, each with one intra-op thread.

    Splitting the chunks beats splitting every op across threads: an op split N ways waits for
    its slowest thread at every one of the ~6 ops per layer and step, while a share runs on
    alone (TorchScript drops the GIL). Eager mode holds the GIL, so it gets one worker.
    """
    if device.type != "cpu" or not fast or fastpath.scripted_loop() is None:
        return 1
    return torch.get_num_threads()
