"""``python -m umt.export RUN -o model.pt``: the inference export of a training run.

RUN is a run folder (its ``checkpoints/last.pt`` is used) or a checkpoint file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from umt.checkpoint import EXPORT_FORMAT, TRAIN_FORMAT, atomic_save, load_file
from umt.config import PITCH_SOURCES
from umt.errors import UmtError


def export(run: str | Path, out: str | Path, pitch: str | None = None,
           temperature: float | None = None) -> dict:
    """Write the export of a run's last checkpoint to ``out`` (atomically).

    Args:
        run: Run folder or training checkpoint.
        out: Export file.
        pitch: Where translations take a frame decoder's notes unless told: one of
            ``PITCH_SOURCES`` (see :class:`umt.inference.Translator`; pick it on validation);
            None records no default.
        temperature: The sampling temperature translations use unless told (pick it on
            validation); None records no default.

    Returns:
        A summary: step, domains and path.
    """
    run = Path(run)
    ckpt = run / "checkpoints" / "last.pt" if run.is_dir() else run
    if run.is_dir() and not ckpt.exists():
        raise UmtError(f"{run} holds no checkpoint (expected {ckpt})")
    state = load_file(ckpt, TRAIN_FORMAT)
    exported = {
        "format": EXPORT_FORMAT,
        "config": state["config"]["model"],
        "domains": list(state["domains"]),
        "encoder": state["encoder"],
        "decoders": state["decoders"],
        "note_head": state.get("note_head"),  # None: the model has none
        "step": int(state["step"]),
        "defaults": {k: v for k, v in (("pitch", pitch), ("temperature", temperature))
                     if v is not None},
    }
    atomic_save(exported, out)
    return {"step": exported["step"], "domains": exported["domains"], "path": str(out)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(prog="python -m umt.export", description=__doc__)
    parser.add_argument("run", help="run folder or training checkpoint")
    parser.add_argument("-o", "--out", required=True, help="export file to write")
    parser.add_argument("--pitch", choices=list(PITCH_SOURCES), default=None,
                        help="default source of a frame decoder's notes when translating")
    parser.add_argument("--temperature", type=float, default=None,
                        help="default sampling temperature when translating")
    args = parser.parse_args(argv)
    try:
        info = export(args.run, args.out, args.pitch, args.temperature)
    except UmtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported step {info['step']} ({', '.join(info['domains'])}) to {info['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
