"""Measurement helpers shared by the benchmarks."""

from __future__ import annotations

import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of square matmuls, the best of sizes n/4, n/2 and n, each repeated for
    ``seconds / 3``: the practical ceiling of this machine, measured under the same load as the
    benchmark. Several sizes, because on CPUs with small caches a mid-sized product can beat a
    large one (seen here: 256 x 256 ran faster than 1024 x 1024)."""
    return max(_square_rate(device, dtype, m, seconds / 3) for m in (n // 4, n // 2, n))


def _square_rate(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def markdown_table(rows: list[dict], cols: list[str], fmt=str) -> str:
    """``rows`` as a Markdown table of columns ``cols``, each cell written by ``fmt``."""
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    lines += [" | ".join(fmt(r[c]) if c in r else "-" for c in cols) for r in rows]
    return "\n".join(f"| {line} |" for line in lines)
