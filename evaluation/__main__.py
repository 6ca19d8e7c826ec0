"""``python -m evaluation --model EXPORT --data DIR --pairs violin:piano,flute:piano``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plumbing.errors import UserError
from umt.config import PITCH_SOURCES
from umt.errors import UmtError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m evaluation",
                                 description="Score translations against paired renders.")
    ap.add_argument("--model", type=Path, default=None,
                    help="model export; without it only the baselines are scored")
    ap.add_argument("--data", type=Path, required=True, help="dataset built by data.synth")
    ap.add_argument("--pairs", required=True, help="source:target list, e.g. violin:piano")
    ap.add_argument("-n", type=int, default=8, help="test clips per pair")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--out", type=Path, default=Path("outputs/eval"))
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=None,
                    help="the model's sampling temperature (0 = greedy; default: the model's)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder for the timbre classifier trained on --data (default: OUT/cache);"
                         " evaluations of one dataset can share it")
    ap.add_argument("--pitch", choices=list(PITCH_SOURCES), default=None,
                    help="notes for a frame decoder (see translate.py --help; default: what the "
                         "model recommends)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table. Bad input: one line on stderr, exit status 2."""
    args = parse_args(argv)
    from evaluation.report import markdown
    from evaluation.suite import EvalConfig, evaluate, export_id

    try:
        if args.n < 1 or args.seconds <= 0:
            raise UmtError("-n and --seconds must be positive")
        if args.temperature is not None and args.temperature < 0:
            raise UmtError("--temperature must be >= 0")
        translator, model_id = None, "none"
        if args.model is not None:
            if not args.model.is_file():
                raise UmtError(f"no such model export: {args.model}")
            from umt.inference import Translator  # the model stack is only needed here

            translator = Translator.load(str(args.model), device=args.device, pitch=args.pitch)
            model_id = export_id(args.model, args.pitch)
        cfg = EvalConfig(data=args.data, out=args.out, pairs=args.pairs, n=args.n,
                         seconds=args.seconds, seed=args.seed, temperature=args.temperature,
                         device=args.device, model_id=model_id, cache=args.cache)
        report = evaluate(translator, cfg)
    except (UmtError, UserError) as err:  # one type once UmtError aliases UserError
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown(report))
    print(f"written: {args.out / 'report.md'}, {args.out / 'report.json'}, "
          f"{args.out / 'report.html'} (listening page), {args.out / 'clips'}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
