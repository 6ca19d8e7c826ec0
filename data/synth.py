"""Build a paired multi-instrument dataset: the same notes rendered on several instruments.

    python -m data.synth --out datasets/bach4 --instruments piano,violin,cello,flute \
        --soundfont fluidr3 --sources bach --hours 1

writes ``OUT/<instrument>/{train,val,test}/<piece>.wav`` (16 kHz mono, loudness-normalised),
``OUT/midi/<split>/<piece>.mid`` (the notes every instrument played) and ``OUT/manifest.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile
from tqdm import tqdm

from data.instruments import SoundFont, parse_instruments, resolve_soundfonts
from data.render import fluidsynth_path, render_wav, write_midi
from data.sources import Piece, count_candidates, iter_works, pieces_of
from plumbing.atomic import atomic_text
from umt import audio
from umt.errors import UmtError

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
FORMAT = "umt-paired/1"
DEFAULT_CACHE = Path(__file__).resolve().parent / "cache"


@dataclass
class BuildConfig:
    """Everything that decides a dataset's content; two builds with equal configs are equal."""

    out: Path
    instruments: dict[str, int]
    soundfonts: list[SoundFont]
    sources: list[str] = field(default_factory=lambda: ["bach"])
    hours: float = 1.0
    seed: int = 0
    voices: str = "all"
    max_seconds: float | None = None
    val_frac: float = 0.1
    test_frac: float = 0.1
    jobs: int = 2
    cache: Path = DEFAULT_CACHE

    def identity(self) -> dict:
        """The settings that decide the content (not where or how fast it is built)."""
        d = asdict(self)
        for k in ("out", "jobs", "cache"):
            d.pop(k)
        d["soundfonts"] = {f.name: str(f.path) for f in self.soundfonts}
        return d


def _hash01(*parts: object) -> float:
    """A stable pseudo-random number in [0, 1) from ``parts`` (no Python hash salt)."""
    digest = hashlib.sha1(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(works: list[str], seed: int, val_frac: float, test_frac: float) -> dict[str, str]:
    """Split works into train/val/test by a seeded hash rank.

    With three works or more, val and test get at least one each, so tiny datasets stay usable.
    """
    ranked = sorted(works, key=lambda w: (_hash01(seed, "split", w), w))
    n = len(ranked)
    n_test = max(1, round(n * test_frac)) if n >= 3 else 0
    n_val = max(1, round(n * val_frac)) if n >= 3 else 0
    split = {w: "test" for w in ranked[:n_test]}
    split |= {w: "val" for w in ranked[n_test:n_test + n_val]}
    split |= {w: "train" for w in ranked[n_test + n_val:]}
    return split


def choose_soundfont(fonts: list[SoundFont], seed: int, instrument: str, work: str) -> SoundFont:
    """The SoundFont that plays ``work`` on ``instrument``: all lines of a work share one."""
    return fonts[int(_hash01(seed, "font", instrument, work) * len(fonts))]


def select_pieces(cfg: BuildConfig) -> list[Piece]:
    """Pieces of whole works until ``cfg.hours`` of audio, the sources sharing it evenly.

    Each source's works are visited in a seeded random order; the next work always comes from
    the source with the least audio so far, so 430 chorales do not crowd out 20 quartet
    movements (an exhausted source drops out). An ``hours`` too small for one work per split
    builds the smallest dataset that has them (``len(SPLITS)`` works) and says so on stderr.
    """
    rng = random.Random(cfg.seed)
    streams = {}
    for src in cfg.sources:
        order = list(range(count_candidates([src])))
        rng.shuffle(order)
        streams[src] = iter_works([src], cfg.cache, order)
    seconds = dict.fromkeys(cfg.sources, 0.0)
    chosen: list[Piece] = []
    total = 0.0
    topped_up = False  # works added past the hours asked for, so that every split gets one
    bar = tqdm(total=round(cfg.hours * 3600), desc="reading MIDI", unit="s", leave=False)
    while streams:
        enough = total >= cfg.hours * 3600
        if enough and len({p.work for p in chosen}) >= len(SPLITS):
            break
        topped_up |= enough
        src = min(streams, key=lambda k: seconds[k])
        work = next(streams[src], None)
        if work is None:
            del streams[src]
            continue
        pieces = [p for p in pieces_of(work, cfg.voices, cfg.max_seconds) if p.duration > 0.5]
        chosen += pieces
        added = sum(p.duration for p in pieces)
        seconds[src] += added
        total += added
        bar.update(round(added))
    bar.close()
    _check_selection(cfg, chosen, total, topped_up)
    return chosen


def _check_selection(cfg: BuildConfig, chosen: list[Piece], total: float, topped_up: bool) -> None:
    """One-line errors for selections that cannot make a dataset; the note when topped up."""
    if not chosen:
        raise UmtError(f"no notes found in sources {','.join(cfg.sources)}")
    works = len({p.work for p in chosen})
    if works < len(SPLITS):
        raise UmtError(f"the sources hold only {works} usable work(s); train, val and test need "
                       f"one each: add sources")
    names = [p.name for p in chosen]
    if len(set(names)) != len(names):
        raise UmtError("two works share a name; give sources with distinct folder names")
    if topped_up:
        print(f"note: --hours {cfg.hours:g} is less than the smallest dataset with a train, val "
              f"and test work; building {works} works ({total / 3600:.2g} h per instrument)",
              file=sys.stderr)


def _render_task(cfg: BuildConfig, piece: Piece, inst: str, font: SoundFont, dest: Path) -> float:
    """Render one piece on one instrument into ``dest`` unless it is there; returns seconds."""
    if not dest.is_file():
        render_wav(piece.notes, font, cfg.instruments[inst], dest, inst)
    return soundfile.info(str(dest)).duration


def _check_out(cfg: BuildConfig, write: bool) -> None:
    """Refuse to mix two different datasets in one folder; remember the settings for resuming."""
    stamp = cfg.out / ".build.json"
    ident = json.dumps(cfg.identity(), sort_keys=True, default=str)
    if stamp.is_file() and stamp.read_text() != ident:
        raise UmtError(f"{cfg.out} holds a dataset built with other settings; use another --out")
    if write:
        cfg.out.mkdir(parents=True, exist_ok=True)
        atomic_text(stamp, ident)


def build_dataset(cfg: BuildConfig) -> dict:
    """Select, split, render and describe a paired dataset; resumes a broken build.

    Returns:
        The manifest (also written to ``cfg.out / "manifest.json"``).
    """
    fluidsynth_path()
    _check_out(cfg, write=False)
    pieces = select_pieces(cfg)
    _check_out(cfg, write=True)
    split = assign_splits(sorted({p.work for p in pieces}), cfg.seed, cfg.val_frac, cfg.test_frac)
    entries: dict[str, dict] = {}
    jobs = []
    for p in pieces:
        s = split[p.work]
        midi = Path("midi", s, f"{p.name}.mid")
        write_midi(cfg.out / midi, p.notes)
        entries[p.name] = {"work": p.work, "split": s, "voice": p.voice,
                           "monophonic": p.monophonic, "notes_seconds": round(p.duration, 3),
                           "midi": str(midi), "audio": {}}
        for inst in cfg.instruments:
            font = choose_soundfont(cfg.soundfonts, cfg.seed, inst, p.work)
            rel = Path(inst, s, f"{p.name}.wav")
            entries[p.name]["audio"][inst] = {"path": str(rel), "soundfont": font.name}
            jobs.append((p, inst, font, rel))
    with ThreadPoolExecutor(max(1, cfg.jobs)) as pool:
        futures = [pool.submit(_render_task, cfg, p, i, f, cfg.out / r) for p, i, f, r in jobs]
        for (p, inst, _, _), fut in tqdm(zip(jobs, futures, strict=True), total=len(jobs),
                                         desc="rendering", unit="file"):
            entries[p.name]["audio"][inst]["seconds"] = round(fut.result(), 3)
    manifest = _manifest(cfg, split, entries)
    atomic_text(cfg.out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _manifest(cfg: BuildConfig, split: dict[str, str], entries: dict[str, dict]) -> dict:
    hours = {i: round(sum(e["audio"][i]["seconds"] for e in entries.values()) / 3600, 4)
             for i in cfg.instruments}
    return {"format": FORMAT, "sample_rate": audio.SAMPLE_RATE, "settings": cfg.identity(),
            "instruments": cfg.instruments, "hours": hours,
            "splits": {s: sorted(w for w, v in split.items() if v == s) for s in SPLITS},
            "pieces": dict(sorted(entries.items()))}


def load_manifest(root: str | os.PathLike) -> dict:
    """Read ``root/manifest.json`` of a built dataset (one-line error when it is not one)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise UmtError(f"{root} is not a built dataset (no {MANIFEST}); run python -m data.synth")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise UmtError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def parse_args(argv: list[str] | None) -> BuildConfig:
    ap = argparse.ArgumentParser(prog="python -m data.synth", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="dataset folder to write")
    ap.add_argument("--instruments", default="piano,violin,cello,flute",
                    help="comma list of names from data/instruments.py")
    ap.add_argument("--soundfont", default="fluidr3",
                    help="comma list of fluidr3, timgm6mb, musescore or .sf2/.sf3 paths; "
                         "several give each (instrument, work) one of them at random")
    ap.add_argument("--sources", default="bach",
                    help="comma list of music21 corpus composers and/or folders of .mid files")
    ap.add_argument("--hours", type=float, default=1.0, help="audio per instrument, about")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--voices", default="all",
                    help="monophonic lines to add: all, none or track names (soprano,bass)")
    ap.add_argument("--max-seconds", type=float, default=None, help="cut every work after this")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="where corpus works converted to MIDI are kept")
    a = ap.parse_args(argv)
    if a.hours <= 0:
        raise UmtError("--hours must be positive")
    return BuildConfig(out=a.out, instruments=parse_instruments(a.instruments),
                       soundfonts=resolve_soundfonts(a.soundfont),
                       sources=[s.strip() for s in a.sources.split(",") if s.strip()],
                       hours=a.hours, seed=a.seed, voices=a.voices, max_seconds=a.max_seconds,
                       jobs=a.jobs, cache=a.cache)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: build the dataset, print a one-line summary; UmtError -> one line, exit 2."""
    try:
        manifest = build_dataset(parse_args(argv))
    except UmtError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = {s: len(w) for s, w in manifest["splits"].items()}
    print(f"{len(manifest['pieces'])} pieces from {sum(counts.values())} works {counts}; "
          f"hours per instrument: {manifest['hours']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
