"""Translation time for a user's file: what chunk-batched generation buys at each input length.

    python bench/translate.py [--model PATH] [--seconds 4 10 60] [--to piano] [--json]

For each input length (a violin example clip repeated to that length), decodes one latent into
``--to`` three ways with the same model: as translate.py does by default (chunks in one batch,
TorchScript loop, worker threads), the same in eager mode, and unchunked (one sequence, the
TorchScript loop: the plain cached generator). ``decode_s`` is the median of ``--repeats``
timings (the unchunked baseline is timed once: it is slow), ``realtime_factor`` the input
seconds per decode second, ``vs_unchunked`` the speed-up over the baseline in the same run.
The encoder runs once per length and is timed apart (``encode_s``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table  # noqa: E402
from umt.inference import Translator  # noqa: E402

CLIP = ROOT / "examples" / "violin_bwv124_soprano.wav"
MODEL = ROOT / "umt" / "pretrained" / "wavenet_tiny.pt"  # chunked WaveNet generation
MODES = {  # name: (Translator options, timed once)
    "chunked+script": ({}, False),
    "chunked (eager)": ({"fast": False}, False),
    "unchunked+script": ({"chunk_seconds": float("inf")}, True),
}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_length(base: Translator, wav: np.ndarray, sr: int, seconds: float, to: str,
                 repeats: int) -> list[dict]:
    x = np.tile(wav, int(np.ceil(seconds * sr / len(wav))))[: int(seconds * sr)]
    t0 = time.perf_counter()
    latent = base.encode(x, sr)
    encode_s = time.perf_counter() - t0
    rows = []
    for mode, (options, once) in MODES.items():
        tr = Translator(base.model, base.device, **options)
        plan = tr.plan(to, latent.length).chunks
        runs = [timed(lambda tr=tr: tr.decode(latent, to)) for _ in range(1 if once else repeats)]
        rows.append({"seconds": seconds, "mode": mode, "chunks": plan.count,
                     "chunk_s": plan.chunk / 16_000, "decode_s": statistics.median(runs),
                     "encode_s": encode_s, "runs": len(runs)})
    base_s = next(r["decode_s"] for r in rows if r["mode"] == "unchunked+script")
    for r in rows:
        r["realtime_factor"] = seconds / r["decode_s"]
        r["vs_unchunked"] = base_s / r["decode_s"]
    return rows


def table(rows: list[dict]) -> str:
    cols = ["seconds", "mode", "chunks", "chunk_s", "decode_s", "realtime_factor",
            "vs_unchunked", "encode_s"]
    return markdown_table(rows, cols, lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0, 10.0, 60.0])
    p.add_argument("--to", default="piano")
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object per row")
    args = p.parse_args(argv)
    wav, sr = sf.read(CLIP, dtype="float32")
    base = Translator.load(args.model, args.device, domains=[args.to])
    rows = []
    for seconds in args.seconds:
        rows += bench_length(base, wav, sr, seconds, args.to, args.repeats)
        if args.json:
            for r in rows[-len(MODES):]:
                print(json.dumps({**r, "device": str(base.device),
                                  "threads": torch.get_num_threads()}), flush=True)
    if not args.json:
        print(f"model {args.model.name}, target {args.to}, device {base.device}, "
              f"{torch.get_num_threads()} threads; decode_s: median of {args.repeats}")
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
