"""Generation speed of the symbolic decoder on CPU, with and without the segment memory.

With memory each new token attends to cached keys/values (constant work per token, linear total);
without it, every step re-reads up to ``mem_len + seg_len`` past tokens (the same context) from
scratch.

Usage: python bench/symbolic_generate.py [--model PATH] [--lengths 128 256 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

# Run as a plain script from a checkout: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from symbolic.api import Composer  # noqa: E402
from symbolic.grammar import Grammar  # noqa: E402
from symbolic.sample import SampleConfig, generate  # noqa: E402


def tokens_per_second(composer: Composer, n_tokens: int, use_memory: bool) -> float:
    """Samples ``n_tokens`` tokens after BOS and returns the rate."""
    table = composer.table
    bos = table.id("BOS_None")
    g = Grammar(table, exact=True)  # no bar limit, EOS never allowed: runs to max_new
    g.consume(bos)
    start = time.perf_counter()
    new = generate(composer.model, table, [bos], g, SampleConfig(seed=0), max_new=n_tokens,
                   use_memory=use_memory)
    return len(new) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="export (default: the shipped model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
