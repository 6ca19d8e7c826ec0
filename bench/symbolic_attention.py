"""Held-out NLL of the decoder's attention variants at an equal small training budget.

Every variant starts from the same seed and sees the same continuation (``lm``) batches for the
same number of steps; the table gives the test-split NLL per token (read segment by segment with
memory, as ``python -m symbolic eval`` does), parameters and wall time. A few hundred steps rank
the variants only roughly: differences within a few hundredths of a nat are noise at this size.

Usage: python bench/symbolic_attention.py [--size tiny] [--steps 200] [--pieces 10]
           [--variants rel_bias txl rel_bias+bars txl+bars] [--limit 0] [--threads 1]
           [--data chorales|corpus]   (corpus: the cache of ``python -m symbolic corpus``)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a plain script from a checkout: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from symbolic.data import load_pieces  # noqa: E402
from symbolic.evaluate import model_nll  # noqa: E402
from symbolic.model import count_params  # noqa: E402
from symbolic.tokens import build_tokenizer  # noqa: E402
from symbolic.train import compose_config, lr_at, setup, task_batch, train_step  # noqa: E402

VARIANTS = ("rel_bias", "txl", "rel_bias+bars", "txl+bars")


def overrides_of(variant: str) -> list[str]:
    """Hydra overrides of a variant name: ``<attention>[+bars]``."""
    attention, _, bars = variant.partition("+")
    return [f"model.attention={attention}", f"model.bar_attention={str(bars == 'bars').lower()}"]


def run(variant: str, base: list[str], pieces: int) -> dict[str, float]:
    """Trains one variant on ``lm`` from scratch and scores the first test pieces."""
    cfg = compose_config(base + overrides_of(variant))
    s = setup(cfg)
    t = cfg.trainer
    start = time.perf_counter()
    for step in range(t.steps):
        for g in s.opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        batch = {"lm": task_batch(s.train_b, "lm", t.batch_size, cfg.model.seg_len, s.device)}
        train_step(s.model, s.opt, batch, t.grad_clip)
    minutes = (time.perf_counter() - start) / 60
    s.model.eval()
    test = load_pieces(cfg.data, build_tokenizer())["test"][:pieces]
    bos, eos = s.table.id("BOS_None"), s.table.id("EOS_None")
    seqs = [[bos, *p.full.tolist(), eos] for p in test]
    nll = sum(model_nll(s.model, s.table, q) for q in seqs)
    tokens = sum(len(q) - 1 for q in seqs)
    return {"nll": nll / tokens, "tokens": tokens, "params": count_params(s.model),
            "minutes": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="model config (tiny, small)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pieces", type=int, default=10, help="test pieces scored")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--cache-dir", default="cache/symbolic")
    parser.add_argument("--limit", type=int, default=0, help="use the first N chorales (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default="chorales", choices=("chorales", "corpus"))
    args = parser.parse_args()
    base = [f"model={args.size}", f"data={args.data}", f"data.cache_dir={args.cache_dir}",
            f"data.limit={args.limit}",
            f"trainer.steps={args.steps}", f"trainer.batch_size={args.batch}",
            f"trainer.threads={args.threads}", f"trainer.warmup={max(1, args.steps // 10)}",
            "trainer.tasks=[lm]"]
    if args.limit:  # a handful of pieces: keep a test split at all
        base += ["data.val_fraction=0.2", "data.test_fraction=0.3"]
    rows = [(v, run(v, base, args.pieces)) for v in args.variants]
    print(f"\nmodel {args.size}, data {args.data}, {args.steps} lm steps x batch {args.batch}, "
          f"{rows[0][1]['tokens']} test tokens")
    print(f"{'variant':>14} | {'NLL/token':>9} | {'params':>8} | {'train min':>9}")
    for v, r in rows:
        print(f"{v:>14} | {r['nll']:9.3f} | {r['params']:8d} | {r['minutes']:9.2f}")


if __name__ == "__main__":
    main()
