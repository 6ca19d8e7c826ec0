"""Print the decoder study's table (docs/ablation.md) from each row's run and evaluation.

Usage: python scripts/ablation_table.py RUNS ROW...   (RUNS/ROW: the run, RUNS/eval_ROW: its
``python -m evaluation`` output). Steps, training minutes and the training speed (audio seconds
of every step's segments per second of training time) come from the run's checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def row(runs: Path, name: str) -> str:
    """One Markdown row: the model's held-out scores, its reconstruction's RPA, its budget."""
    report = json.loads((runs / f"eval_{name}" / "report.json").read_text())
    m, rec = report["overall"]["model"], report["overall"]["reconstruction"]
    pairs = report["pairs"].values()
    below = sum(p["model"]["mel_db"] < p["identity"]["mel_db"] for p in pairs)
    state = torch.load(runs / name / "checkpoints" / "last.pt", weights_only=True,
                       map_location="cpu")
    seconds = state.get("train_seconds", float("nan"))
    data = state["config"]["data"]
    audio_s = state["step"] * data["batch_per_domain"] * len(state["domains"]) * data["segment"]
    speed = audio_s / 16_000 / seconds
    return (f"| {name} | {m['rpa']:.3f} | {m['target_prob']:.3f} | {m['mel_db']:.2f} | "
            f"{below}/{len(pairs)} | {rec['rpa']:.3f} | {speed:.2f} | "
            f"{state['step']} | {seconds / 60:.1f} |")


def main() -> None:
    runs, names = Path(sys.argv[1]), sys.argv[2:]
    print("| row | RPA | P(target) | log-mel dB | below identity | own-recon RPA | "
          "train audio-s/s | steps | train min |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        print(row(runs, name))
    first = json.loads((runs / f"eval_{names[0]}" / "report.json").read_text())
    for system in ("transcribe_render", "identity"):
        o = first["overall"][system]
        print(f"| ({system.replace('_', '-')}) | {o['rpa']:.3f} | {o['target_prob']:.3f} | "
              f"{o['mel_db']:.2f} | | | | | |")


if __name__ == "__main__":
    main()
