"""Note-head accuracy of a frame-model export on a data.synth build's test pieces.

    python scripts/probe_notes.py MODEL.pt DATA_ROOT [--seconds 8] [--pieces 6]

For each monophonic test piece and instrument: the share of labelled-active frames whose key
the head also marks (recall), of head-active frames that are labelled (precision), and the
same for the pitch tracker (--pitch tracker's notes), on the first --seconds of the piece.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from umt.inference import Translator
from umt.labels import note_frames, read_notes

KEYS = 88


def scores(notes: torch.Tensor, active: np.ndarray) -> tuple[float, float]:
    """(recall, precision) of predicted activity (88, F) against labels (88, F)."""
    pred = notes[:KEYS].numpy() > 0.5
    F = min(pred.shape[1], active.shape[1])
    pred, ref = pred[:, :F], active[:, :F] > 0
    hit = (pred & ref).sum()
    return hit / max(1, ref.sum()), hit / max(1, pred.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--pieces", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    man = json.loads((args.data / "manifest.json").read_text())
    pieces = [p for p in man["pieces"].values() if p["split"] == "test" and p["monophonic"]]
    head = Translator.load(args.model, "cpu", pitch="head")
    track = Translator.load(args.model, "cpu", pitch="tracker")
    rows = {"head": [], "tracker": []}
    for p in pieces[: args.pieces]:
        notes = read_notes(args.data / p["midi"])
        for inst, a in p["audio"].items():
            wav, sr = sf.read(args.data / a["path"], dtype="float32")
            wav = wav[: int(args.seconds * sr)]
            active, _ = note_frames(notes, 0, len(wav))
            if not active.any():  # a line that starts later: nothing to score
                continue
            for name, tr in (("head", head), ("tracker", track)):
                rows[name].append((inst, *scores(tr.encode(wav, sr).inputs["notes"][0], active)))
    for name, r in rows.items():
        rec = np.mean([x[1] for x in r])
        prec = np.mean([x[2] for x in r])
        per = {i: round(float(np.mean([x[1] for x in r if x[0] == i])), 2)
               for i in sorted({x[0] for x in r})}
        print(f"{name}: recall {rec:.3f} precision {prec:.3f} ({len(r)} clips); recall by "
              f"instrument {per}")


if __name__ == "__main__":
    main()
