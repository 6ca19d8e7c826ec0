"""Command line: ``python -m symbolic continue|harmonize|melody|remix|train|eval|corpus``.

A thin wrapper over ``symbolic.api``; bad input ends with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from symbolic.defaults import (
    CHORD_GUIDE,
    CHORD_JUDGE,
    CONTINUE_TEMP,
    HARMONY_CANDIDATES,
    HARMONY_CONSONANCE,
    HARMONY_TEMP,
)

GENERATE = ("continue", "harmonize", "melody", "remix")


def _add_common(p: argparse.ArgumentParser, pitch_temp: float = CONTINUE_TEMP) -> None:
    p.add_argument("input", help="input MIDI file")
    p.add_argument("-o", "--output", help="output MIDI (default: INPUT.<command>.mid)")
    p.add_argument("--model", help="export to use (default: the shipped corpus model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pitch-temp", type=float, default=pitch_temp,
                   help=f"temperature of pitch tokens (default {pitch_temp:g})")
    p.add_argument("--timing-temp", type=float, default=0.8,
                   help="temperature of timing tokens (bar, position, duration, ...)")
    p.add_argument("--top-k", type=int, default=0, help="0: off")
    p.add_argument("--top-p", type=float, default=0.95, help="1.0: off")
    p.add_argument("--render", metavar="OUT.wav",
                   help="also play the output through a SoundFont (fluidsynth): 16 kHz wav")
    p.add_argument("--soundfont", metavar="NAME|PATH",
                   help="SoundFont of --render: fluidr3 (default), timgm6mb, musescore or a "
                        ".sf2/.sf3 file")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also draw the input and the output as piano rolls (new notes in red)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="python -m symbolic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("continue", help="continue a piece by N bars")
    _add_common(p)
    p.add_argument("--bars", type=int, default=8)
    for name, role in (("harmonize", "melody"), ("melody", "chords")):
        p = sub.add_parser(name, help=f"write {'lower voices' if role == 'melody' else 'a melody'}"
                                       f" for a {role}")
        # harmonize: the temperature eval chose on the validation chorales
        _add_common(p, HARMONY_TEMP if name == "harmonize" else CONTINUE_TEMP)
        p.add_argument("--track", type=int, help=f"track holding the {role} (default: all notes)")
        harmony = name == "harmonize"  # the consensus settings eval chose on the val chorales
        p.add_argument("--candidates", type=int, default=HARMONY_CANDIDATES if harmony else 1,
                       help="windows sampled per source window, the consensus kept (default "
                            f"{HARMONY_CANDIDATES if harmony else 1}; 1: a single sample)")
        p.add_argument("--consonance", type=float, default=HARMONY_CONSONANCE if harmony else 0.0,
                       help="weight of on-beat consonance with the source in that choice "
                            f"(default {HARMONY_CONSONANCE if harmony else 0.0:g})")
        p.add_argument("--context-bars", type=int, default=None,
                       help="bars each window reaches back, continuing the output kept for "
                            "them (default: half the model's window; 0: windows start afresh)")
        if harmony:
            _add_tagger(p, "--chord-guide", "--chord-judge")
    p = sub.add_parser("remix", help="keep the rhythm or the pitches, re-write the rest")
    _add_common(p)
    p.add_argument("--keep", required=True, choices=["rhythm", "pitch"])
    p = sub.add_parser("train", help="train (hydra overrides, e.g. model=small data=folder "
                                     "data.root=DIR)")
    p.add_argument("overrides", nargs="*")
    p = sub.add_parser("eval", help="held-out evaluation table")
    p.add_argument("--model", help="export to evaluate (default: the shipped model)")
    p.add_argument("--data", default="chorales",
                   help="'chorales', 'corpus' (the cache of `symbolic corpus`) or a MIDI folder")
    p.add_argument("--cache-dir", default="cache/symbolic")
    p.add_argument("--pieces", type=int, default=10,
                   help="test pieces for the chord and remix metrics (0: all)")
    p.add_argument("--prompts", type=int, default=8, help="continuation prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="held-out pieces to score: val to choose a setting, test to report")
    p.add_argument("--harmony-temp", type=float, default=None,
                   help="pitch temperature of the melody->chords section (default: eval's)")
    p.add_argument("--continue-temp", type=float, default=None,
                   help="pitch temperature of the continuation section (default: eval's)")
    p.add_argument("--harmony-candidates", type=int, default=HARMONY_CANDIDATES,
                   help=f"melody->chords windows sampled, consensus kept (default "
                        f"{HARMONY_CANDIDATES})")
    p.add_argument("--harmony-consonance", type=float, default=HARMONY_CONSONANCE,
                   help=f"consonance weight of that choice (default {HARMONY_CONSONANCE:g})")
    p.add_argument("--harmony-context", type=int, default=None,
                   help="bars each melody->chords window reaches back (default: half the "
                        "model's window; 0: windows afresh)")
    _add_tagger(p, "--harmony-guide", "--harmony-judge")
    p = sub.add_parser("tagger", help="train the chord tagger that guides harmonize")
    p.add_argument("--data", default="corpus",
                   help="'corpus' (its Bach chorales), 'chorales' or a MIDI folder")
    p.add_argument("--cache-dir", default="cache/symbolic")
    p.add_argument("-o", "--out", default="symbolic/pretrained/tagger.pt")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    from symbolic.corpus import add_parser as add_corpus  # light: heavy imports are inside

    add_corpus(sub)
    return parser


def _add_tagger(p: argparse.ArgumentParser, guide: str, judge: str) -> None:
    """The chord tagger's options (symbolic/guide.py)."""
    p.add_argument("--tagger", metavar="PATH|none",
                   help="chord tagger that guides the lower voices (default: the shipped one; "
                        "none: no guidance)")
    p.add_argument(guide, type=float, default=CHORD_GUIDE,
                   help=f"weight of the tagger's bias on pitches on the beat (default "
                        f"{CHORD_GUIDE:g}; 0: off)")
    p.add_argument(judge, type=float, default=CHORD_JUDGE,
                   help=f"weight of the tagger's judgement in the consensus (default "
                        f"{CHORD_JUDGE:g}; 0: off)")


def _check_weights(**weights: float) -> None:
    """One-line error for a negative (or NaN) weight, named by its flag."""
    from symbolic.midi_io import UserError

    for flag, w in weights.items():
        if not w >= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be >= 0, got {w:g}")


def run_generate(args: argparse.Namespace) -> str:
    """Runs one of the MIDI-in, MIDI-out commands; returns a summary line."""
    from symbolic.midi_io import read_midi, select_track, write_midi

    # Validate before the heavy imports, so bad input fails in a blink.
    candidates, consonance = getattr(args, "candidates", 1), getattr(args, "consonance", 0.0)
    _check_consensus("--candidates", candidates, "--consonance", consonance)
    context = getattr(args, "context_bars", None)
    _check_context("--context-bars", context)
    guide, judge = getattr(args, "chord_guide", 0.0), getattr(args, "chord_judge", 0.0)
    _check_weights(chord_guide=guide, chord_judge=judge)
    score = given = read_midi(args.input)
    if args.command in ("harmonize", "melody"):
        role = "melody" if args.command == "harmonize" else "chords"
        given = select_track(score, args.track, role)  # what the model sees: the plot's input
    path = args.output or str(Path(args.input).with_suffix(f".{args.command}.mid"))
    views = None
    if args.render or args.plot or args.soundfont:
        from symbolic.render import Views

        views = Views.prepare(path, args.render, args.plot, args.soundfont)
    from symbolic.api import Composer
    from symbolic.sample import SampleConfig

    composer = Composer.load(args.model, getattr(args, "tagger", None))
    sample = SampleConfig(args.pitch_temp, args.timing_temp, args.top_k, args.top_p, args.seed,
                          candidates, consonance, context, guide, judge)
    if args.command == "continue":
        out = composer.continue_score(score, args.bars, sample)
    elif args.command == "harmonize":
        out = composer.harmonize(score, args.track, sample)
    elif args.command == "melody":
        out = composer.melody(score, args.track, sample)
    else:
        out = composer.remix(score, args.keep, sample)
    write_midi(out, path)
    line = f"wrote {path} ({out.note_num()} notes)"
    if views:
        line += views.write(given, out, (f"input: {Path(args.input).name}",
                                         f"output: {args.command}"))
    return line


def _check_consensus(k_flag: str, k: int, w_flag: str, w: float) -> None:
    """One-line errors for a candidate count below 1 or a negative consonance weight."""
    from symbolic.midi_io import UserError

    if k < 1:
        raise UserError(f"{k_flag} must be >= 1, got {k}")
    if not w >= 0:  # NaN too
        raise UserError(f"{w_flag} must be >= 0, got {w:g}")


def _check_context(flag: str, bars: int | None) -> None:
    """One-line error for a negative window context (too large needs the model: Composer)."""
    from symbolic.midi_io import UserError

    if bars is not None and bars < 0:
        raise UserError(f"{flag} must be >= 0, got {bars}")


def run_train(overrides: list[str]) -> str:
    """Hydra-composed training; returns the export path line."""
    from symbolic.midi_io import UserError
    from symbolic.train import compose_config, train

    try:
        cfg = compose_config(overrides)
    except UserError:
        raise
    except Exception as err:  # hydra's own override errors: one line for the user
        raise UserError(f"bad config: {str(err).splitlines()[0]}") from None
    return f"exported {train(cfg)}"


def run_eval(args: argparse.Namespace) -> str:
    """Runs the held-out evaluation and prints its table."""
    from plumbing.errors import UserError
    from symbolic.evaluate import evaluate, format_table

    temps = {}
    for flag, value, default in (("harmony", args.harmony_temp, HARMONY_TEMP),
                                 ("continue", args.continue_temp, CONTINUE_TEMP)):
        temps[flag] = default if value is None else value
        if temps[flag] < 0:
            raise UserError(f"--{flag}-temp must be >= 0, got {temps[flag]:g}")
    _check_consensus("--harmony-candidates", args.harmony_candidates, "--harmony-consonance",
                     args.harmony_consonance)
    _check_context("--harmony-context", args.harmony_context)
    _check_weights(harmony_guide=args.harmony_guide, harmony_judge=args.harmony_judge)
    report = evaluate(args.model, args.data, args.cache_dir, args.pieces, args.prompts, args.seed,
                      args.split, temps["harmony"], temps["continue"], args.harmony_candidates,
                      args.harmony_consonance, args.harmony_context, args.tagger,
                      args.harmony_guide, args.harmony_judge)
    return format_table(report)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (130/143 after SIGINT/SIGTERM stopped training)."""
    from plumbing.signals import Interrupted
    from symbolic.midi_io import UserError

    args = build_parser().parse_args(argv)
    start = time.time()
    try:
        if args.command in GENERATE:
            print(run_generate(args))
        elif args.command == "train":
            print(run_train(args.overrides))
        elif args.command == "corpus":
            from symbolic.corpus import run_cli

            print(run_cli(args))
        elif args.command == "tagger":
            from symbolic.tagger_train import train_on

            print(train_on(args.data, args.cache_dir, args.out, args.epochs, args.seed))
        else:
            print(run_eval(args))
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:  # training saved its state first: the line says how to go on
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"done in {time.time() - start:.1f}s", file=sys.stderr)
    return 0
