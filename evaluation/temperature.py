"""Pick a model's sampling temperature on validation works and store it in the export.

``python -m evaluation.temperature --model EXPORT --data BUILD --pairs violin:piano,...
--temperatures 0.6,0.8,1.0 --out OUT [--write]`` runs the suite once per temperature on clips of
the build's **validation** works (the test works stay unseen by the choice), prints one row per
temperature and, with ``--write``, records the one whose translations lie closest to the true
renders (lowest log-mel distance, which a wrong pitch and a wrong timbre both raise) as the
export's default (``translate.py`` and the suite use it unless told otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.timbre import TimbreConfig
from plumbing.errors import UserError
from umt.errors import UmtError

METRICS = ("rpa", "target_prob", "mel_db")


def sweep(model: Path, data: Path, pairs: str, temperatures: list[float], out: Path, n: int = 2,
          seconds: float = 4.0, cache: Path | None = None, device: str = "cpu",
          timbre: TimbreConfig | None = None) -> dict:
    """Score the model at each temperature on validation clips.

    ``timbre`` sizes the timbre classifier (default: the suite's); it is trained once, in
    ``cache`` (default ``out/cache``), and shared by every temperature.

    Returns:
        {temperature: {metric: overall value of the model}} for :data:`METRICS`.
    """
    from evaluation.suite import EvalConfig, evaluate, export_id
    from umt.inference import Translator

    translator = Translator.load(str(model), device=device)
    rows = {}
    for t in temperatures:
        cfg = EvalConfig(data=data, out=out / f"t{t:g}", pairs=pairs, n=n, seconds=seconds,
                         temperature=t, device=device, cache=cache or out / "cache",
                         model_id=export_id(model),
                         split="val", timbre=timbre or TimbreConfig(),
                         systems=("model",))  # the baselines do not depend on it
        overall = evaluate(translator, cfg)["overall"]["model"]
        rows[t] = {m: overall[m] for m in METRICS}
    return rows


def best(rows: dict) -> float:
    """The temperature with the lowest log-mel distance (ties: the lower temperature)."""
    return min(rows, key=lambda t: (rows[t]["mel_db"], t))


def write_temperature(model: Path, temperature: float) -> None:
    """Store ``temperature`` as the export's default, atomically; everything else is kept."""
    from umt.checkpoint import EXPORT_FORMAT, atomic_save, load_file

    state = load_file(model, EXPORT_FORMAT)
    state["defaults"] = dict(state.get("defaults") or {}) | {"temperature": float(temperature)}
    atomic_save(state, model)


def table(rows: dict, chosen: float) -> str:
    """Markdown rows: temperature, RPA, P(target), log-mel dB; the chosen one marked."""
    lines = ["| temperature | RPA | P(target) | log-mel dB |", "| --- | --- | --- | --- |"]
    for t, r in rows.items():
        cells = ["-" if r[m] is None else f"{r[m]:.3f}" for m in METRICS]
        lines.append(f"| {t:g}{' (chosen)' if t == chosen else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line; bad input: one line on stderr, exit status 2."""
    ap = argparse.ArgumentParser(prog="python -m evaluation.temperature",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="model export")
    ap.add_argument("--data", type=Path, required=True, help="dataset built by data.synth")
    ap.add_argument("--pairs", required=True, help="source:target list, e.g. violin:piano")
    ap.add_argument("--temperatures", required=True, help="comma list, e.g. 0.6,0.8,1.0")
    ap.add_argument("-n", type=int, default=2, help="validation clips per pair")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length")
    ap.add_argument("--out", type=Path, default=Path("outputs/temperature"))
    ap.add_argument("--cache", type=Path, default=None, help="timbre classifier folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--write", action="store_true", help="store the chosen one in the export")
    args = ap.parse_args(argv)
    try:
        try:
            temps = [float(t) for t in args.temperatures.split(",") if t.strip()]
        except ValueError:
            raise UmtError(f"--temperatures must be numbers, e.g. 0.6,0.8,1.0; got "
                           f"{args.temperatures!r}") from None
        if not temps or min(temps) < 0:
            raise UmtError("--temperatures needs one or more values >= 0")
        if not args.model.is_file():
            raise UmtError(f"no such model export: {args.model}")
        rows = sweep(args.model, args.data, args.pairs, temps, args.out, args.n, args.seconds,
                     args.cache, args.device)
        chosen = best(rows)
        print(table(rows, chosen))
        if args.write:
            write_temperature(args.model, chosen)
            print(f"stored temperature {chosen:g} in {args.model}")
    except (UmtError, UserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
