"""Peak memory and wall time of translate.py on long inputs: memory must not grow with length.

    python bench/memory.py [--model PATH] [--minutes 1 10 60] [--to piano] [--json]

For each length, the example violin clip is tiled to that many minutes, written to a temp
folder, and translated by ``translate.py`` in a child process, start-up included;
``peak_rss_mb`` is the OS's peak resident set of that child (``ru_maxrss``), ``wall_s`` its
wall time, ``realtime_factor`` input seconds per wall second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table  # noqa: E402

CLIP = ROOT / "examples" / "violin_bwv124_soprano.wav"
WRAPPER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
           "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
MODEL = ROOT / "umt" / "pretrained" / "umt.pt"


def run_one(model: Path, minutes: float, to: str, folder: Path) -> dict:
    """Translate a tiled clip of ``minutes`` in a child process; its peak RSS and wall time."""
    clip, sr = sf.read(CLIP, dtype="float32")
    n = int(minutes * 60 * sr)
    src = folder / f"long_{minutes:g}min.wav"
    sf.write(src, np.resize(clip, n), sr)
    cmd = [sys.executable, str(ROOT / "translate.py"), str(src), "--to", to, "--model",
           str(model), "-o", str(folder / "out"), "--overwrite", "-q"]
    t0 = time.perf_counter()
    # A fresh wrapper per run: ru_maxrss of RUSAGE_CHILDREN is a maximum over all children.
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True,
                         text=True).stdout
    wall = time.perf_counter() - t0
    src.unlink()
    peak_kb = int(out.strip().splitlines()[-1])
    return {"minutes": minutes, "peak_rss_mb": round(peak_kb / 1024), "wall_s": round(wall, 1),
            "realtime_factor": round(minutes * 60 / wall, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=MODEL)
    p.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    p.add_argument("--to", default="piano")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            rows.append(run_one(args.model, minutes, args.to, Path(tmp)))
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        print(markdown_table(rows, ["minutes", "peak_rss_mb", "wall_s", "realtime_factor"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
