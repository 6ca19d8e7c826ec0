"""Translate recordings into other instruments with a umt model.

    python translate.py song.wav --to piano --model model.pt
    python translate.py recordings/ --to piano --to violin -o translated/

A folder is searched recursively and its tree mirrored under the output folder; each input gives
``name.<instrument>.wav`` (16 kHz mono unless --keep-rate), and such files are never inputs, so
-o may be the input folder. Short inputs are generated together, their chunks sharing batches.
Finished outputs are skipped unless --overwrite, and every file is written to a temp name and
renamed, so an interrupted run leaves no partial file and a rerun continues. Under torchrun the
files are shared out across ranks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from plumbing.errors import UserError
from umt.config import PITCH_SOURCES

if TYPE_CHECKING:  # the model stack is imported only once arguments are checked
    from umt.inference import Translator

PRETRAINED = Path(__file__).resolve().parent / "umt" / "pretrained" / "umt.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="translate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", type=Path, help="audio files or folders")
    p.add_argument("--to", action="append", default=[], metavar="INSTRUMENT",
                   help="target instrument (repeat for several)")
    p.add_argument("--model", type=Path, help=f"umt export (default: {PRETRAINED} if present)")
    p.add_argument("-o", "--out", type=Path, default=Path("translated"),
                   help="output folder (default: ./translated; may be the input folder)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature; 0 = most likely sample (default: the model's, "
                        "else 1)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--plot", action="store_true",
                   help="also write name.<instrument>.png: input and output spectrograms")
    p.add_argument("--keep-rate", action="store_true",
                   help="write at the input's sample rate instead of 16 kHz")
    p.add_argument("--list", action="store_true", help="print the model's instruments and exit")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length for parallel generation (default: the fastest by a cost "
                        "model, >= 0.25 s, longer when memory needs); 'inf': no chunking")
    p.add_argument("--batch", type=int, default=None,
                   help="chunks per batch, shared by short files (default: from memory)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU worker threads sharing each batch of chunks (default: torch's)")
    p.add_argument("--pitch", choices=list(PITCH_SOURCES), default=None,
                   help="notes for a frame decoder: the model's note head, a pitch tracker "
                        "(torchcrepe; one line), chords (that line plus constant-Q notes), or "
                        "auto (chords where notes sound together); default: what the model "
                        "recommends")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="the encoder's arithmetic: auto = bf16 where the hardware has it")
    p.add_argument("--eager", action="store_true",
                   help="skip the TorchScript generation loop (same output, slower)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return p


def model_path(arg: Path | None) -> Path:
    """The model to use: --model, else the shipped one; a clear error when there is none."""
    if arg is not None:
        return arg
    if PRETRAINED.is_file():
        return PRETRAINED
    raise UserError(f"no model given and none shipped at {PRETRAINED}; pass --model PATH "
                    "(an export from `python -m umt.export`)")


def translate_all(translator: Translator, todo: list[tuple[Path, dict[str, Path]]],
                  args: argparse.Namespace) -> tuple[int, int]:
    """Translate each input into the outputs it lacks, writing them; returns (written, failed)."""
    from tqdm import tqdm

    from umt.batch import translate_files

    left, written, failed = [len(outs) for _, outs in todo], 0, 0
    quiet = True if args.quiet else None  # None: bars only on a terminal
    overall = tqdm(total=len(todo), unit="file", disable=quiet, position=0)
    inner, shown = tqdm(unit="step", leave=False, position=1, disable=quiet), None

    def progress(pack: tuple[Path, ...], done: int, total: int) -> None:
        nonlocal shown
        if pack is not shown:  # the next pack: its own count and rate
            shown = pack
            inner.reset(total)
            inner.set_description(pack[0].name + (f" +{len(pack) - 1}" if len(pack) > 1 else ""))
        inner.total, inner.n = total, done
        inner.refresh()

    try:  # the decoders loaded are the targets, in order
        for r in translate_files(translator, [(src, list(outs)) for src, outs in todo],
                                 translator.domains, seed=args.seed, progress=progress,
                                 temperature=args.temperature, keep_input=args.plot):
            if r.error is not None:
                tqdm.write(f"error: {r.error}", file=sys.stderr)
                failed, left[r.index] = failed + 1, 0
            else:
                r.save(todo[r.index][1][r.to], keep_rate=args.keep_rate, plot=args.plot)
                written, left[r.index] = written + 1, left[r.index] - 1
            overall.update(0 if left[r.index] else 1)
    finally:
        inner.close()
        overall.close()
    return written, failed


def run(args: argparse.Namespace) -> int:
    """Everything after parsing; returns the exit code (1 when some inputs failed)."""
    from plumbing.device import resolve_device
    from umt.checkpoint import check_instruments, export_domains
    from umt.inputs import check_writable, plan_work

    model = model_path(args.model)
    if args.list:
        print("\n".join(export_domains(model)))
        return 0
    if not args.to:
        raise UserError("say which instrument to translate to with --to (see --list)")
    if not args.inputs:
        raise UserError("no input files or folders given")
    if args.temperature is not None and args.temperature < 0:
        raise UserError("--temperature must be >= 0")
    targets = list(dict.fromkeys(args.to))
    check_writable(args.out)
    check_instruments(targets, domains := export_domains(model))
    device = resolve_device(args.device)  # under torchrun: LOCAL_RANK's GPU
    work = plan_work(args.inputs, args.out, targets, domains, args.overwrite)
    for msg in work.errors:
        print(f"error: {msg}", file=sys.stderr)
    written = failed = 0
    if work.todo:
        import torch

        from umt.inference import Translator

        if args.threads > 0:
            torch.set_num_threads(args.threads)
        translator = Translator.load(model, device, domains=targets, batch=args.batch,
                                     chunk_seconds=args.chunk_seconds, fast=not args.eager,
                                     pitch=args.pitch, precision=args.precision)
        written, failed = translate_all(translator, work.todo, args)
    skipped = f", {len(work.translations)} translations skipped" if work.translations else ""
    print(f"{written} written, {work.done} inputs already done, "
          f"{failed + len(work.errors)} failed{skipped}")
    return 1 if failed or work.errors else 0


def main(argv: list[str] | None = None) -> int:
    """Console entry (``umt-translate``): one-line errors, no tracebacks for user mistakes."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
