"""Test clips of a paired dataset: the same notes on a source and a target instrument."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.render import read_tracks
from umt import audio
from umt.errors import UmtError


@dataclass(frozen=True)
class Clip:
    """One excerpt: ``start``/``seconds`` cut the same span out of the source and target renders."""

    piece: str
    source: str
    target: str
    start: float
    seconds: float
    monophonic: bool
    source_path: Path
    target_path: Path
    target_soundfont: str

    @property
    def id(self) -> str:
        """File-safe name, unique per pair: piece and start in centiseconds."""
        return f"{self.piece}@{round(self.start * 100):06d}"

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, ground truth) audio, each (T,) at 16 kHz, cut to the same span and length."""
        a, b = (audio.load(p) for p in (self.source_path, self.target_path))
        s, n = round(self.start * audio.SAMPLE_RATE), round(self.seconds * audio.SAMPLE_RATE)
        a, b = a[s:s + n], b[s:s + n]
        n = min(a.size, b.size)
        return a[:n], b[:n]


def parse_pairs(spec: str, instruments: list[str]) -> list[tuple[str, str]]:
    """``"violin:piano,flute:piano"`` -> [("violin", "piano"), ...], checked against the dataset."""
    pairs = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        src, sep, tgt = item.partition(":")
        if not sep or not src or not tgt:
            raise UmtError(f"bad pair {item!r}: write source:target, e.g. violin:piano")
        for name in (src, tgt):
            if name not in instruments:
                raise UmtError(f"{name!r} is not in the dataset (has {', '.join(instruments)})")
        pairs.append((src, tgt))
    if not pairs:
        raise UmtError("no pairs given (e.g. --pairs violin:piano)")
    return pairs


def pick_clips(root: Path, manifest: dict, src: str, tgt: str, n: int, seconds: float,
               seed: int = 0, split: str = "test") -> list[Clip]:
    """``n`` clips of one pair from ``split``, alternating monophonic lines and full textures.

    Each clip starts on a note onset of its piece, chosen with ``seed``, so it is never silence.
    ``split="val"`` picks from the validation works (to choose a setting without the test set).
    """
    rng = random.Random(f"{seed}:{src}:{tgt}")
    test = [(name, e) for name, e in sorted(manifest["pieces"].items())
            if e["split"] == split and src in e["audio"] and tgt in e["audio"]]
    if not test:
        raise UmtError(f"the dataset has no {split} pieces on both {src} and {tgt}")
    mono = [t for t in test if t[1]["monophonic"]]
    poly = [t for t in test if not t[1]["monophonic"]]
    rng.shuffle(mono)
    rng.shuffle(poly)
    order = [x for pair in zip(mono, poly, strict=False) for x in pair]
    order += mono[len(poly):] + poly[len(mono):]
    clips = []
    for i in range(n):
        name, e = order[i % len(order)]
        dur = min(e["audio"][src]["seconds"], e["audio"][tgt]["seconds"])
        onsets = sorted({round(nt.start, 3) for _, t in read_tracks(root / e["midi"]) for nt in t})
        fits = [o for o in onsets if o + seconds <= dur] or [0.0]
        start = rng.choice(fits)
        clips.append(Clip(name, src, tgt, start, min(seconds, dur - start), e["monophonic"],
                          root / e["audio"][src]["path"], root / e["audio"][tgt]["path"],
                          e["audio"][tgt]["soundfont"]))
    return list(dict.fromkeys(clips))  # a small test set may repeat a clip: score it once
