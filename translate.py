"""Translate recordings into other instruments with a umt model.

    python translate.py song.wav --to piano --model model.pt
    python translate.py recordings/ --to piano --to violin -o translated/

A folder is searched recursively and its tree mirrored under the output folder; each input gives
``name.<instrument>.wav`` (16 kHz mono unless --keep-rate). Short inputs are generated together,
their chunks sharing batches. Finished outputs are skipped unless --overwrite, and every file is
written to a temp name and renamed, so an interrupted run leaves no partial file and a rerun
continues. Under torchrun the files are shared out across ranks.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from umt.errors import UmtError

if TYPE_CHECKING:  # the model stack is imported only once arguments are checked
    import numpy as np

    from umt.inference import Latent
    from umt.inputs import Job

PRETRAINED = Path(__file__).resolve().parent / "umt" / "pretrained" / "umt.pt"
# Most samples generated for one pack of inputs: their noise and classes take 12 bytes a sample
# (200 MB here), and a 10-minute input with its warm-ups still fits alone.
PACK_STEPS = 16_000_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="translate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", type=Path, help="audio files or folders")
    p.add_argument("--to", action="append", default=[], metavar="INSTRUMENT",
                   help="target instrument (repeat for several)")
    p.add_argument("--model", type=Path, help=f"umt export (default: {PRETRAINED} if present)")
    p.add_argument("-o", "--out", type=Path, default=Path("translated"),
                   help="output folder (default: ./translated)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature; 0 = most likely sample (default 1)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--plot", action="store_true",
                   help="also write name.<instrument>.png: input and output spectrograms")
    p.add_argument("--keep-rate", action="store_true",
                   help="write at the input's sample rate instead of 16 kHz")
    p.add_argument("--list", action="store_true", help="print the model's instruments and exit")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length for parallel generation (default: the fastest by a cost "
                        "model, at least 0.25 s, longer when memory needs); 'inf' disables "
                        "chunking")
    p.add_argument("--batch", type=int, default=None,
                   help="chunks per batch, shared by short files (default: from memory)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (default: torch's): each batch of chunks is shared among "
                        "this many worker threads")
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
    raise UmtError(f"no model given and none shipped at {PRETRAINED}; pass --model PATH "
                   "(an export from `python -m umt.export`)")


def check_writable(out: Path) -> None:
    """Fail before any work if ``out`` cannot be created or written (nothing is created here)."""
    if out.exists() and not out.is_dir():
        raise UmtError(f"output folder {out} exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UmtError(f"cannot write to output folder {out} ({probe} is not writable)")


def shard(jobs: list, env: dict | None = None) -> list:
    """The jobs of this rank under torchrun (RANK / WORLD_SIZE), all of them otherwise."""
    env = os.environ if env is None else env
    rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    return jobs[rank::world]


def rank_device(device: str) -> str:
    """Under torchrun each local rank takes its own GPU."""
    if "LOCAL_RANK" in os.environ and device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return device


def outputs_of(job, out: Path, targets: list[str]) -> dict[str, Path]:
    """Output path per target instrument: OUT/<mirrored folder>/<stem>.<instrument>.wav."""
    return {to: out / job.rel / f"{job.src.stem}.{to}.wav" for to in targets}


def drop_clashes(jobs: list, out: Path, targets: list[str]) -> tuple[list, list[str]]:
    """Drop inputs whose outputs another input already claims (same name, same folder)."""
    owner: dict[Path, Path] = {}
    kept, errors = [], []
    for job in jobs:
        path = outputs_of(job, out, targets)[targets[0]].resolve()
        if path in owner:
            errors.append(f"{job.src} and {owner[path]} would both write {path.name}; "
                          "translate them into different --out folders")
            continue
        owner[path] = job.src
        kept.append(job)
    return kept, errors


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed run left for ``path`` (named .<name>.<pid>.tmp)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


@dataclass
class Pending:
    """An input read and encoded, waiting for its pack to be decoded."""

    job: Job
    todo: dict[str, Path]  # target -> output path still to write
    latent: Latent
    sr: int  # the file's own sample rate
    wav: np.ndarray | None = None  # the input at 16 kHz, kept only for --plot
    chunks: int = 0  # rows of a generation batch it takes
    steps: int = 0  # samples generated for it


def prepare(translator, job: Job, todo: dict[str, Path], args) -> Pending:
    """Read, check and encode one input (the encoder runs once, whatever the targets)."""
    from umt.audio import SAMPLE_RATE
    from umt.inference import check_audio
    from umt.inputs import read_input

    wav, sr = read_input(job.src)
    check_audio(wav, str(job.src))
    latent = translator.encode(wav, SAMPLE_RATE)
    plan, _ = translator.plan(next(iter(todo)), latent.length)
    return Pending(job, todo, latent, sr, wav if args.plot else None, plan.count,
                   plan.count * plan.steps)


def translate_pack(translator, pack: list[Pending], args, bar) -> int:
    """Decode a pack of inputs into each target, their chunks sharing batches, and write the
    outputs; returns how many were written."""
    from umt.audio import SAMPLE_RATE, resample, save

    targets = list(dict.fromkeys(to for p in pack for to in p.todo))
    written = 0
    for k, to in enumerate(targets):
        items = [p for p in pack if to in p.todo]

        def progress(done: int, total: int, k: int = k) -> None:
            if bar is not None:
                bar.total = total * len(targets)
                bar.n = k * total + done
                bar.refresh()

        outs = translator.decode_many([p.latent for p in items], to, seed=args.seed,
                                      temperature=args.temperature, progress=progress)
        for p, audio in zip(items, outs, strict=True):
            path, audio = p.todo[to], audio.numpy()
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(path)
            rate = p.sr if args.keep_rate else SAMPLE_RATE
            save(path, resample(audio, SAMPLE_RATE, rate), rate)
            written += 1
            if args.plot:
                from umt.plot import save_spectrograms

                save_spectrograms(path.with_suffix(".png"), {
                    f"input: {p.job.src.name}": p.wav,
                    f"output: {path.name}": audio})
    return written


def run(args: argparse.Namespace) -> int:
    """Everything after parsing; returns the exit code (1 when some inputs failed)."""
    from tqdm import tqdm

    from umt.checkpoint import export_domains
    from umt.inference import Translator
    from umt.inputs import collect

    model = model_path(args.model)
    if args.list:
        print("\n".join(export_domains(model)))
        return 0
    if not args.to:
        raise UmtError("say which instrument to translate to with --to (see --list)")
    if not args.inputs:
        raise UmtError("no input files or folders given")
    if args.temperature < 0:
        raise UmtError("--temperature must be >= 0")
    targets = list(dict.fromkeys(args.to))
    check_writable(args.out)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    translator = Translator.load(model, device=rank_device(args.device), domains=targets,
                                 chunk_seconds=args.chunk_seconds, batch=args.batch,
                                 fast=not args.eager)
    jobs, errors = collect(args.inputs, exclude=args.out)
    jobs, clashes = drop_clashes(jobs, args.out, targets)
    for msg in errors + clashes:
        print(f"error: {msg}", file=sys.stderr)
    jobs = shard(jobs)
    written = skipped = 0
    failed = len(errors) + len(clashes)
    quiet = True if args.quiet else None
    overall = tqdm(total=len(jobs), unit="file", disable=quiet, position=0)
    pack: list[Pending] = []

    def flush() -> None:
        nonlocal written
        if not pack:
            return
        name = pack[0].job.src.name + (f" +{len(pack) - 1}" if len(pack) > 1 else "")
        bar = tqdm(desc=name, unit="step", leave=False, position=1, disable=quiet)
        try:
            written += translate_pack(translator, pack, args, None if bar.disable else bar)
        finally:
            bar.close()
        overall.update(len(pack))
        pack.clear()

    cap = translator.plan(targets[0], 1)[1]  # chunks a batch holds
    for job in jobs:
        todo = {to: p for to, p in outputs_of(job, args.out, targets).items()
                if args.overwrite or not p.exists()}
        if not todo:
            skipped += 1
            overall.update()
            continue
        try:
            item = prepare(translator, job, todo, args)
        except UmtError as err:
            tqdm.write(f"error: {err}", file=sys.stderr)
            failed += 1
            overall.update()
            continue
        # Short inputs share batches (a pack), up to a full batch or PACK_STEPS samples.
        if (sum(p.chunks for p in pack) + item.chunks > cap
                or sum(p.steps for p in pack) + item.steps > PACK_STEPS):
            flush()
        pack.append(item)
    flush()
    overall.close()
    print(f"{written} written, {skipped} inputs already done, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Console entry (``umt-translate``): one-line errors, no tracebacks for user mistakes."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UmtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
