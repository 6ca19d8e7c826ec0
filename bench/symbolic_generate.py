"""Generation speed of the symbolic decoder on CPU, with and without the segment memory.

With memory each new token attends to cached keys/values (constant work per token, linear total);
without it, every step re-reads up to ``mem_len + seg_len`` past tokens (the same context) from
scratch. The second table harmonises a 16-bar melody with K candidates per window, sampled in one
batch (``generate_many``, what ``harmonize --candidates K`` does), against K one-candidate
harmonisations one after the other; the third, with windows that start afresh against windows
that continue the bars they reach back to (``--context-bars``, the default).

Usage: python bench/symbolic_generate.py [--model PATH] [--lengths 128 256 512] [--threads 1]
       [--candidates 4 8 16]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import symusic
import torch

# Run as a plain script from a checkout: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from symbolic.api import Composer  # noqa: E402
from symbolic.grammar import Grammar  # noqa: E402
from symbolic.sample import SampleConfig, generate  # noqa: E402


def tokens_per_second(composer: Composer, n_tokens: int, use_memory: bool) -> float:
    """Samples ``n_tokens`` tokens after BOS and returns the rate."""
    bos = composer.table.id("BOS_None")
    start = time.perf_counter()
    new = generate(composer.model, composer.table, [bos], _grammar(composer, bos),
                   SampleConfig(seed=0), max_new=n_tokens, use_memory=use_memory)
    return len(new) / (time.perf_counter() - start)


def _grammar(composer: Composer, bos: int) -> Grammar:
    g = Grammar(composer.table, exact=True)  # no bar limit, EOS never allowed: runs to max_new
    g.consume(bos)
    return g


def scale_melody(bars: int) -> symusic.Score:
    """A 4/4 melody of quarter notes walking up and down a C major scale."""
    score = symusic.Score(480)
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("melody")
    steps = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62]
    for i in range(4 * bars):
        track.notes.append(symusic.Note(480 * i, 480, steps[i % len(steps)] + 12, 80))
    score.tracks.append(track)
    return score


def batched_vs_one_by_one(composer: Composer, melody: list[int], k: int) -> tuple[float, float]:
    """Seconds to harmonise ``melody`` with ``k`` candidates per window (batched, one pass),
    then as ``k`` one-candidate harmonisations one after the other (as many samples)."""
    start = time.perf_counter()
    composer.seq2seq_tokens(melody, True, SampleConfig(candidates=k))
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for seed in range(k):
        composer.seq2seq_tokens(melody, True, SampleConfig(seed=seed))
    return batched, time.perf_counter() - start


def afresh_vs_context(composer: Composer, melody: list[int], k: int,
                      pairs: int = 3) -> tuple[float, float, float]:
    """Median seconds to harmonise ``melody`` (``k`` candidates) with windows that start
    afresh and with the default context, timed in ``pairs`` alternating pairs (this VM is
    noisy), and the median of the pairs' ratios (context / afresh)."""
    times: dict[int | None, list[float]] = {0: [], None: []}
    for i in range(pairs):
        for context in ((0, None) if i % 2 == 0 else (None, 0)):
            start = time.perf_counter()
            composer.seq2seq_tokens(melody, True, SampleConfig(candidates=k, context_bars=context))
            times[context].append(time.perf_counter() - start)
    ratios = [c / a for a, c in zip(times[0], times[None], strict=True)]
    return float(np.median(times[0])), float(np.median(times[None])), float(np.median(ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export (default: the shipped model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", type=int, nargs="*", default=[4, 8, 16])
    args = parser.parse_args()
    if any(k < 1 for k in args.candidates):
        parser.error("--candidates must all be >= 1")
    torch.set_num_threads(args.threads)
    composer = Composer.load(args.model)
    cfg = composer.model.cfg
    print(f"model {cfg.name}: d_model {cfg.d_model}, {cfg.dec_layers} decoder layers, "
          f"seg_len {cfg.seg_len}, mem_len {cfg.mem_len}; CPU threads {args.threads}")
    print(f"{'tokens':>7} | {'with memory tok/s':>17} | {'without tok/s':>13} | speed-up")
    tokens_per_second(composer, 16, True)  # warm-up
    for n in args.lengths:
        with_mem = tokens_per_second(composer, n, True)
        without = tokens_per_second(composer, n, False)
        print(f"{n:7d} | {with_mem:17.1f} | {without:13.1f} | {with_mem / without:7.2f}x")
    if not args.candidates:
        return
    melody = composer.tokens(scale_melody(16))
    print(f"\nharmonise 16 bars |  K | {'batched s':>9} | {'one by one s':>12} | speed-up")
    for k in args.candidates:
        batched, single = batched_vs_one_by_one(composer, melody, k)
        print(f"{'':17s} | {k:2d} | {batched:9.2f} | {single:12.2f} | {single / batched:7.2f}x")
    ctx = composer.context_bars(SampleConfig())
    print(f"\nharmonise 16 bars |  K | {'afresh s':>8} | {f'context {ctx} s':>11} | "
          "ratio (median of 3 alternating pairs)")
    for k in args.candidates:
        afresh, context, ratio = afresh_vs_context(composer, melody, k)
        print(f"{'':17s} | {k:2d} | {afresh:8.2f} | {context:11.2f} | {ratio:5.2f}x")


if __name__ == "__main__":
    main()
