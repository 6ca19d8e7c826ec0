"""Generation speed of the WaveNet decoders against the naive generator and the matmul peak.

    python bench/generate.py [--quick] [--json] [--device cpu|cuda] [--configs tiny paper]

For each shipped size: cached streaming at batch 1, chunk-batched streaming (the batch a long
file runs at), each in eager mode and in the TorchScript loop (``+script``, what translate.py
runs unless ``--eager``), and the naive generator the reference code used (a full forward
pass over the receptive field per sample; timed on a few samples only). The ``+sample`` rows
run the same decoder with a per-sample conditioning input (added at its input, one (B, R) add
per step; :mod:`umt.nn.condition`): their ratio to the row above is that input's step
overhead. ``gflops`` is the arithmetic rate reached, from the FLOPs per sample that the
config implies; ``peak_gflops`` the best fp32 square-matmul rate this machine shows before and
after each config, so ``pct_peak`` is comparable across machines and loads.

Each mode is timed in several windows (5; 2 with ``--quick``; the naive generator: single
samples, one for ``release``): ``samples_per_s`` is their median, the speed a long translation
sustains, and ``pct_peak_best`` the fastest window against the peak, which is itself the
fastest of many matmuls: on a VM whose speed drifts, the two best-of figures are measured alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import markdown_table, matmul_peak, sync  # noqa: E402
from umt import fastpath  # noqa: E402
from umt.audio import SAMPLE_RATE  # noqa: E402
from umt.config import InputConfig, ModelConfig, to_dataclass  # noqa: E402
from umt.flops import decoder_flops_per_sample  # noqa: E402
from umt.generate import max_batch  # noqa: E402
from umt.nn.decoders import build_decoder  # noqa: E402
from umt.nn.stream import Stream  # noqa: E402
from umt.nn.wavenet import SILENCE, Decoder  # noqa: E402
from umt.sampling import sample  # noqa: E402
from umt.threads import cpu_threads, cpu_workers, intra_op_threads  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "umt" / "model"
PEAK_N = {"cuda": 4096, "cpu": 1024}  # largest square matmul of the peak
MODES = ["naive", "cached", "cached+script", "cached+script+sample", "chunk-batched",
         "chunk-batched+script", "chunk-batched+script+sample"]


def flops_per_sample(cfg: ModelConfig) -> float:
    """FLOPs of one cached generation step, the conditioning amortised over its frame."""
    layers = cfg.decoder.blocks * cfg.decoder.layers
    cond = 2 * cfg.encoder.latent_dim * layers * 2 * cfg.decoder.gate / cfg.encoder.pool
    return decoder_flops_per_sample(cfg.decoder) + cond


def cached_rates(dec: Decoder, batch: int, steps: int, device: torch.device, fast: bool,
                 repeats: int) -> list[float]:
    """Samples/s of streaming generation as translate.py runs it, in ``repeats`` windows of
    ``steps`` steps each: ``fast`` = the TorchScript loop, on CPU with the batch split among
    ``torch.get_num_threads()`` worker threads of one intra-op thread each; else the same loop
    in Python (``--eager``), one worker."""
    L, G, R = len(dec.layers), dec.cfg.gate, dec.cfg.residual
    shares = [len(n) for n in torch.arange(batch).tensor_split(cpu_workers(device, fast))]
    shares = [n for n in shares if n]
    params = dec.step_params()  # shared, as umt.generate.generate shares it
    streams = [dec.new_stream(n, params) for n in shares]  # before the clock: paper's ring, 1 GB
    per_sample = bool(dec.condition.per_sample)
    for st, n in zip(streams, shares, strict=True):
        rows = torch.randn(steps, n, R, device=device) if per_sample else None
        st.set_condition(torch.randn(n, L, 2 * G, device=device), rows)

    def run(st: Stream, count: int) -> None:
        n = st.batch
        prev = torch.full((n,), SILENCE, device=device)
        noise = torch.rand(count, n, device=device)
        out = torch.empty(count, n, dtype=torch.long, device=device)
        with torch.inference_mode():
            fastpath.run_frame(st, prev, noise, out, 1.0, fast)

    threads = 1 if len(shares) > 1 else torch.get_num_threads()
    with cpu_threads(batch, device), intra_op_threads(threads), ThreadPoolExecutor(
            len(shares)) as pool:
        for _ in range(2):  # warm-up; TorchScript profiles the first runs, then optimises
            list(pool.map(lambda st: run(st, 2), streams))
        rates = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            list(pool.map(lambda st: run(st, steps), streams))
            sync(device)
            rates.append(batch * steps / (time.perf_counter() - t0))
    return rates


def naive_rates(dec: Decoder, samples: int, device: torch.device) -> list[float]:
    """Samples/s of the uncached generator, each sample timed alone: one full forward pass over
    the receptive field per sample."""
    rf = dec.receptive_field
    q = torch.full((1, rf), SILENCE, device=device)
    z = {"z": torch.randn(1, dec.condition.spec("z").channels, -(-rf // dec.frame),
                          device=device)}
    rates = []
    with torch.inference_mode():
        dec(q, z)  # warm-up
        for _ in range(samples):
            sync(device)
            t0 = time.perf_counter()
            logits = dec(q, z)[-1]  # (1, classes): only the last position is new
            nxt = sample(logits, torch.rand(1, device=device), 1.0)
            q = torch.cat([q[:, 1:], nxt[:, None]], 1)
            sync(device)
            rates.append(1 / (time.perf_counter() - t0))
    return rates


def frame_rates(dec: torch.nn.Module, batch: int, seconds: float, device: torch.device,
                repeats: int) -> list[float]:
    """Samples/s of a frame decoder's generation (controls + synth), ``batch`` sequences of
    ``seconds`` each, conditioned on random latents and a held note per voice."""
    frames = int(seconds * SAMPLE_RATE) // dec.frame
    inputs = {}
    for spec in dec.condition.specs:
        n = -(-frames * dec.frame // spec.hop)
        inputs[spec.name] = torch.rand(batch, spec.channels, n, device=device) * (
            spec.name != dec.notes)
    inputs[dec.notes][:, 40:44] = 1  # four keys held: every voice sounds
    rates = []
    with torch.inference_mode():
        dec.generate(inputs, 10)  # warm-up
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            dec.generate(inputs, frames)
            sync(device)
            rates.append(batch * frames * dec.frame / (time.perf_counter() - t0))
    return rates


def bench_frame(name: str, cfg: ModelConfig, device: torch.device,
                args: argparse.Namespace) -> list[dict]:
    """Rows of a frame decoder: batch 1 and a batch of 16, 10 s each (3 s with --quick)."""
    dec = build_decoder(cfg).eval().to(device)
    seconds, reps = (3.0, 2) if args.quick else (10.0, 5)
    rows = []
    for mode, batch in (("frame", 1), ("frame-batched", 16)):
        rates = frame_rates(dec, batch, seconds, device, reps)
        rate = statistics.median(rates)
        rows.append({"config": name, "device": device_name(device), "mode": mode,
                     "batch": batch, "samples_per_s": float(f"{rate:.4g}"),
                     "samples_per_s_best": float(f"{max(rates):.4g}"),
                     "realtime_factor": float(f"{rate / SAMPLE_RATE:.3g}"),
                     "windows": len(rates)})
    return rows


def bench_config(name: str, device: torch.device, args: argparse.Namespace) -> list[dict]:
    cfg = to_dataclass(ModelConfig, yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    if cfg.decoder.kind == "frame":
        return bench_frame(name, cfg, device, args)
    torch.manual_seed(0)
    dec = build_decoder(cfg).eval().to(device)
    cfg.condition = [*cfg.condition, InputConfig(name="src", feature="source", hop=1)]
    dec_sample = build_decoder(cfg).eval().to(device)  # the same, with a per-sample input
    fps = flops_per_sample(cfg)
    batch = args.batch or max_batch(dec, 32_000, device)
    (steps1, steps_b), reps = ((100, 8), 2) if args.quick else ((400, 12), 5)
    # Measured before and after this config's runs, not once per benchmark: on our VM the
    # peak measured 88 and 158 GFLOP/s a minute apart, so one probe can land in a dip.
    peak = matmul_peak(device, torch.float32, PEAK_N[device.type])
    runs = [
        ("naive", 1, naive_rates(dec, 1 if args.quick or name == "release" else reps, device)),
        ("cached", 1, cached_rates(dec, 1, steps1, device, False, reps)),
        ("cached+script", 1, cached_rates(dec, 1, steps1, device, True, reps)),
        ("cached+script+sample", 1, cached_rates(dec_sample, 1, steps1, device, True, reps)),
        ("chunk-batched", batch, cached_rates(dec, batch, steps_b, device, False, reps)),
        ("chunk-batched+script", batch, cached_rates(dec, batch, steps_b, device, True, reps)),
        ("chunk-batched+script+sample", batch,
         cached_rates(dec_sample, batch, steps_b, device, True, reps)),
    ]
    peak = max(peak, matmul_peak(device, torch.float32, PEAK_N[device.type]))
    naive = statistics.median(runs[0][2])
    rows = []
    for mode, b, rates in runs:
        # The naive generator recomputes the whole receptive field for every sample.
        work = fps * (dec.receptive_field if mode == "naive" else 1)
        rate, best = statistics.median(rates), max(rates)
        rows.append({
            "config": name, "device": device_name(device), "mode": mode, "batch": b,
            "samples_per_s": float(f"{rate:.4g}"), "samples_per_s_best": float(f"{best:.4g}"),
            "realtime_factor": float(f"{rate / SAMPLE_RATE:.3g}"),
            "gflops": round(rate * work / 1e9, 2), "peak_gflops": round(peak, 1),
            "pct_peak": round(100 * rate * work / 1e9 / peak, 1),
            "pct_peak_best": round(100 * best * work / 1e9 / peak, 1),
            "vs_naive": round(rate / naive, 1), "mflop_per_sample": round(work / 1e6, 2),
            "windows": len(rates),
        })
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()}"


def table(rows: list[dict]) -> str:
    cols = ["config", "mode", "batch", "samples_per_s", "realtime_factor", "gflops",
            "peak_gflops", "pct_peak", "pct_peak_best", "vs_naive"]
    return markdown_table(rows, cols)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "small", "paper", "release", "frame"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="chunk batch (default: from memory)")
    p.add_argument("--quick", action="store_true", help="fewer timed steps")
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    peak_bf16 = matmul_peak(device, torch.bfloat16, PEAK_N[device.type])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for name in args.configs:
        new = bench_config(name, device, args)
        rows += new
        if args.json:
            for r in new:
                print(json.dumps({**r, "peak_gflops_bf16": round(peak_bf16, 1),
                                  "load_avg": load}), flush=True)
    if not args.json:
        print(f"device: {device_name(device)}; bf16 matmul peak {peak_bf16:.0f} GFLOP/s; "
              f"load average {load:.2f} at start. samples_per_s: median of the timed windows; "
              f"peak_gflops: best fp32 square matmul up to n={PEAK_N[device.type]}, measured "
              f"before and after each config; pct_peak_best: the fastest window against it")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
