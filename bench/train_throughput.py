"""Training throughput: audio-seconds trained per wall-second, per model size and precision.

    python bench/train_throughput.py [--configs tiny,small,paper] [--steps 3] [--json]

Each row times full training steps (adversary step + generator step + optimiser updates) of the
real :class:`umt.trainer.Trainer` on pre-drawn batches, after one warm-up step. On a GPU it also
reports the share of the measured bf16 matmul peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import matmul_peak, sync  # noqa: E402
from umt.config import DataConfig, ModelConfig, TrainConfig, TrainerConfig, to_dataclass  # noqa: E402
from umt.flops import decoder_flops_per_sample, encoder_flops_per_sample  # noqa: E402
from umt.toy import make_toy_dataset  # noqa: E402
from umt.trainer import Trainer  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "umt" / "model"


def bench_one(name: str, precision: str, device: str, steps: int, segment: int, batch: int,
              root: Path, work: Path) -> dict:
    """Time ``steps`` training steps of model ``name``; returns one table row."""
    model = to_dataclass(ModelConfig, yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    cfg = TrainConfig(
        model=model,
        data=DataConfig(root=str(root), cache_dir=str(work / "cache"), segment=segment,
                        batch_per_domain=batch, val_segments=1),
        trainer=TrainerConfig(device=device, precision=precision, progress=False),
    )
    trainer = Trainer(cfg, work / f"run-{name}-{precision}")
    batches = [trainer.sampler.next_batch() for _ in range(steps + 1)]
    trainer.train_step(batches[0])
    sync(trainer.device)
    start = time.perf_counter()
    for b in batches[1:]:
        trainer.train_step(b)
    sync(trainer.device)
    seconds = (time.perf_counter() - start) / steps
    samples = len(trainer.domains) * batch * segment
    # forward + backward ~ 3x the forward FLOPs; one decoder sees each sample
    flops = 3 * samples * (decoder_flops_per_sample(model.decoder)
                           + encoder_flops_per_sample(model.encoder))
    return {"config": name, "precision": precision, "device": trainer.device.type,
            "batch": len(trainer.domains) * batch, "segment": segment, "step_s": seconds,
            "audio_s_per_s": samples / 16_000 / seconds, "gflops": flops / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,paper")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--segment", type=int, default=16_000)
    parser.add_argument("--batch", type=int, default=2, help="segments per domain (2 domains)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    peaks = {p: matmul_peak(device, torch.float32 if p == "fp32" else torch.bfloat16, 1024)
             for p in args.precisions.split(",")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(Path(tmp) / "toy", files=3, seconds=max(2.0, args.segment / 8e3))
        for name in args.configs.split(","):
            for precision in args.precisions.split(","):
                row = bench_one(name, precision, str(device), args.steps, args.segment,
                                args.batch, root, Path(tmp))
                row["peak_gflops"] = peaks[precision]
                row["peak_share"] = row["gflops"] / peaks[precision]
                rows.append(row)
                if args.json:
                    print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'config':8} {'prec':5} {'device':6} {'batch':>5} {'step s':>8} "
              f"{'audio-s/s':>10} {'GFLOP/s':>8} {'peak':>8} {'share':>6}")
        for r in rows:
            print(f"{r['config']:8} {r['precision']:5} {r['device']:6} {r['batch']:5d} "
                  f"{r['step_s']:8.3f} {r['audio_s_per_s']:10.3f} {r['gflops']:8.1f} "
                  f"{r['peak_gflops']:8.1f} {r['peak_share']:6.1%}")


if __name__ == "__main__":
    main()
