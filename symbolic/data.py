"""Datasets: MIDI pieces -> token sequences (full, melody, harmony), a fixed split, task batches.

A piece with two or more non-empty tracks gives its first track as the melody and the others as the
harmony (the chorales are written soprano first); a one-track piece is split by its skyline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic
import torch
from miditok import REMI

from plumbing.atomic import atomic_text, atomic_torch_save
from plumbing.errors import UserError
from symbolic.align import align_index
from symbolic.config import DataConfig
from symbolic.tokens import (
    K_BAR,
    K_DUR,
    K_PITCH,
    TokenTable,
    bar_starts,
    encode,
    position_ids,
    split_voices,
    transpose,
)

IGNORE = -100


@dataclass
class Piece:
    """Token ids of one piece: all voices, the melody and the harmony."""

    name: str
    full: np.ndarray
    melody: np.ndarray
    harmony: np.ndarray


def midi_paths(cfg: DataConfig) -> tuple[str, list[Path]]:
    """A cache key for the data source and its MIDI files."""
    if cfg.source == "chorales":
        from symbolic.chorales import convert_all

        limit = cfg.limit or None
        return "chorales", convert_all(Path(cfg.cache_dir) / "chorales", limit=limit)
    if cfg.source == "folder":
        root = Path(cfg.root)
        if not root.is_dir():
            raise UserError(f"data.root is not a folder: {cfg.root!r}")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
        key = "folder_" + hashlib.md5(str(root.resolve()).encode()).hexdigest()[:10]
        return key, paths[: cfg.limit] if cfg.limit else paths
    raise UserError(f"data.source must be 'chorales', 'folder' or 'corpus', got {cfg.source!r}")


def make_manifest(names: list[str], val: float, test: float) -> dict[str, list[str]]:
    """Splits by piece with a hash of the name, so a piece never changes split."""
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name in sorted(names):
        u = int(hashlib.md5(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        split["test" if u < test else "val" if u < test + val else "train"].append(name)
    return split


def load_corpus(cfg: DataConfig) -> dict[str, list]:
    """Pieces of a cache built by ``python -m symbolic corpus`` (:mod:`symbolic.corpus`), by
    split (``data.source=corpus``; ``data.root`` = the cache, default ``cache_dir/corpus``). The
    split is the build's; ``data.limit`` caps each split."""
    root = Path(cfg.root) if cfg.root else Path(cfg.cache_dir) / "corpus"
    if not (root / "manifest.json").exists() or not (root / "tokens.pt").exists():
        raise UserError(f"no corpus cache in {root}: build it with "
                        f"`python -m symbolic corpus --out {root}`")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    tokens = torch.load(root / "tokens.pt", weights_only=True)
    out = {}
    for s in ("train", "val", "test"):
        names = [n for n in manifest["split"][s] if n in tokens]
        out[s] = [Piece(n, *(tokens[n][k].long().numpy().astype(np.int64)
                             for k in ("full", "melody", "harmony")))
                  for n in names[: cfg.limit or None]]
    return out


def load_pieces(cfg: DataConfig, tokenizer: REMI) -> dict[str, list[Piece]]:
    """Tokenizes every piece once (cached) and returns them by split of the manifest."""
    if cfg.source == "corpus":  # the token cache of `python -m symbolic corpus`
        return load_corpus(cfg)
    key, paths = midi_paths(cfg)
    if not paths:
        raise UserError(f"no MIDI files found for data.source={cfg.source!r} root={cfg.root!r}")
    cache = Path(cfg.cache_dir) / key
    cache.mkdir(parents=True, exist_ok=True)
    manifest_path = cache / "manifest.json"
    names = [p.stem for p in paths]
    # Pieces keep the split the manifest gave them (a later change of the fractions moves none);
    # files it does not hold yet (a data.limit run before a full one) are split by their names.
    old = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    known = {n: split for split, ns in old.items() for n in ns}
    manifest = make_manifest([n for n in names if n not in known], cfg.val_fraction,
                             cfg.test_fraction)
    for n in names:
        if n in known:
            manifest[known[n]].append(n)
    manifest = {split: sorted(ns) for split, ns in manifest.items()}
    if manifest != {split: sorted(ns) for split, ns in old.items()}:
        atomic_text(manifest_path, json.dumps(manifest, indent=1))
    tok_path = cache / f"tokens_{len(paths)}.pt"
    if tok_path.exists():
        tokens = torch.load(tok_path, weights_only=True)
    else:
        tokens = {p.stem: _tokenize_file(p, tokenizer) for p in paths}
        tokens = {k: v for k, v in tokens.items() if v is not None}
        atomic_torch_save(tokens, tok_path)
    return {split: [Piece(n, *(np.asarray(tokens[n][k]) for k in ("full", "melody", "harmony")))
                    for n in manifest[split] if n in tokens]
            for split in ("train", "val", "test")}


def _tokenize_file(path: Path, tokenizer: REMI) -> dict[str, list[int]] | None:
    try:
        score = symusic.Score(str(path))
    except Exception:  # unreadable files in a user folder are skipped, not fatal
        return None
    if score.note_num() == 0:
        return None
    melody, harmony = split_voices(score)
    return {"full": encode(tokenizer, score), "melody": encode(tokenizer, melody),
            "harmony": encode(tokenizer, harmony)}


def harmony_fill(piece: Piece, table: TokenTable) -> float:
    """Share of the piece's bars in which its harmony starts at least one note.

    Counted against the bars of the whole piece: the harmony's own tokens end at its last note.
    """
    total = int((table.kind[piece.full] == K_BAR).sum())
    kind = table.kind[piece.harmony]
    bars = np.cumsum(kind == K_BAR)
    filled = len(np.unique(bars[(kind == K_PITCH) & (bars > 0)]))
    return min(1.0, filled / total) if total else 0.0


def collection_weights(pieces: list[Piece], weights: dict[str, float]) -> np.ndarray | None:
    """Draw probabilities of ``pieces`` by collection (first folder of the name); None: uniform.

    Raises:
        UserError: a negative weight, or weights that leave nothing to draw.
    """
    if not weights:
        return None
    if any(w < 0 for w in weights.values()):
        raise UserError(f"data.seq2seq_weights must not be negative: {dict(weights)}")
    collections = [p.name.split("/")[0] for p in pieces]
    unknown = set(weights) - set(collections)
    if unknown:  # a typo would otherwise train unweighted without a word
        raise UserError(f"data.seq2seq_weights: no collection {', '.join(sorted(unknown))} "
                        "in the melody<->harmony pool")
    w = np.array([weights.get(c, 1.0) for c in collections], dtype=np.float64)
    if w.sum() <= 0:
        raise UserError(f"data.seq2seq_weights={dict(weights)} leave no piece to draw")
    return w / w.sum()


def pad_stack(seqs: list[np.ndarray], value: int) -> torch.Tensor:
    """Right-pads 1-D int arrays to one (B, T) tensor."""
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class TaskBatcher:
    """Draws random training/eval batches for every task from a list of pieces."""

    def __init__(self, pieces: list[Piece], table: TokenTable, data: DataConfig, seg_len: int,
                 n_pos: int, augment: bool, seed: int = 0):
        if not pieces:
            raise UserError("no pieces in this split (are the MIDI files readable, with notes?)")
        self.pieces, self.table, self.data = pieces, table, data
        self.seg_len, self.n_pos, self.augment = seg_len, n_pos, augment
        self.rng = np.random.default_rng(seed)
        self.pad = table.id("PAD_None")
        self.bos, self.eos = table.id("BOS_None"), table.id("EOS_None")
        self.mask = table.id("MASK_None")
        # Tunes without harmony (folk melodies) train lm/mlm only; seq2seq draws from the rest.
        harmonised = [p for p in pieces if (fill := harmony_fill(p, table)) > 0
                      and fill >= data.min_harmony_fill]
        self.harmonised = harmonised or pieces
        self.harmonised_p = collection_weights(self.harmonised, data.seq2seq_weights)

    def _piece(self, pool: list[Piece] | None = None, p_pool: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pool = self.pieces if pool is None else pool
        p = pool[self.rng.choice(len(pool), p=p_pool) if p_pool is not None
                 else self.rng.integers(len(pool))]
        if not self.augment or self.data.transpose == 0:
            return p.full, p.melody, p.harmony
        for _ in range(4):
            shift = int(self.rng.integers(-self.data.transpose, self.data.transpose + 1))
            out = [transpose(x, shift, self.table) for x in (p.full, p.melody, p.harmony)]
            if all(x is not None for x in out):
                return out[0], out[1], out[2]
        return p.full, p.melody, p.harmony

    def _positions(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        pos, bar = position_ids(ids, self.table, self.n_pos)
        return {"pos": pos, "bar": bar}

    def lm(self, batch: int, length: int) -> dict[str, torch.Tensor]:
        """Continuation batch: crops of ``length`` tokens starting at a Bar (or BOS)."""
        seqs = []
        for _ in range(batch):
            full = np.concatenate([[self.bos], self._piece()[0], [self.eos]])
            starts = np.concatenate([[0], bar_starts(full, self.table)])
            starts = starts[starts < max(1, len(full) - length // 2)]
            s = int(self.rng.choice(starts))
            seqs.append(full[s: s + length + 1])
        ids = pad_stack(seqs, self.pad)
        inp, tgt = ids[:, :-1], ids[:, 1:].masked_fill(ids[:, 1:] == self.pad, IGNORE)
        return {"ids": inp, "target": tgt, **self._positions(inp)}

    def mlm(self, batch: int) -> dict[str, torch.Tensor]:
        """Masked batch: each row masks at random, all pitches, or all durations (one mode each)."""
        seqs, masks = [], []
        for _ in range(batch):
            full = self._piece()[0]
            starts = bar_starts(full, self.table)
            s = int(self.rng.choice(starts[starts < max(1, len(full) - self.data.mlm_len // 2)]))
            crop = full[s: s + self.data.mlm_len]
            seqs.append(crop)
            masks.append(self.mask_for(crop, int(self.rng.integers(3))))
        ids = pad_stack(seqs, self.pad)
        mask = pad_stack(masks, 0).bool()
        inp = ids.masked_fill(mask, self.mask)
        return {"ids": inp, "target": ids.masked_fill(~mask, IGNORE), "pad": ids == self.pad,
                **self._positions(inp)}

    def mask_for(self, ids: np.ndarray, mode: int) -> np.ndarray:
        """Mask of one sequence: mode 0 random 15 %, 1 every Pitch, 2 every Duration."""
        if mode == 1:
            return self.table.kind[ids] == K_PITCH
        if mode == 2:
            return self.table.kind[ids] == K_DUR
        mask = self.rng.random(len(ids)) < 0.15
        mask[self.rng.integers(len(ids))] = True  # at least one target per row
        return mask

    def seq2seq(self, batch: int, to_harmony: bool) -> dict[str, torch.Tensor]:
        """Melody->harmony (or the reverse) batch over windows of ``window_bars`` bars."""
        task = self.table.id("ToHarmony_None" if to_harmony else "ToMelody_None")
        srcs, tgts = [], []
        for _ in range(batch):
            _, mel, har = self._piece(self.harmonised, self.harmonised_p)
            src, tgt = window_pair(mel, har, self.table, self.data.window_bars, self.rng)
            if not to_harmony:
                src, tgt = tgt, src
            max_src = self.data.max_src_len if to_harmony else self.data.max_tgt_len
            max_tgt = self.data.max_tgt_len if to_harmony else self.data.max_src_len
            srcs.append(src[:max_src])
            tgts.append(np.concatenate([[task], tgt, [self.eos]])[: max_tgt + 1])
        src_ids, tgt_ids = pad_stack(srcs, self.pad), pad_stack(tgts, self.pad)
        inp, tgt = tgt_ids[:, :-1], tgt_ids[:, 1:].masked_fill(tgt_ids[:, 1:] == self.pad, IGNORE)
        src_pos, src_bar = position_ids(src_ids, self.table, self.n_pos)
        return {"src": src_ids, "src_pos": src_pos, "src_bar": src_bar,
                "src_pad": src_ids == self.pad, "ids": inp, "target": tgt,
                "align": align_index(src_ids, inp, self.table), **self._positions(inp)}


def window_pair(mel: np.ndarray, har: np.ndarray, table: TokenTable, n_bars: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of the same random ``n_bars`` bars from the melody and the harmony."""
    mb, hb = bar_starts(mel, table), bar_starts(har, table)
    total = min(len(mb), len(hb))
    a = int(rng.integers(max(1, total - n_bars + 1)))
    return bar_slice(mel, mb, a, a + n_bars), bar_slice(har, hb, a, a + n_bars)


def bar_slice(ids: np.ndarray, starts: np.ndarray, a: int, b: int) -> np.ndarray:
    """Tokens of bars [a, b) given the Bar token indices ``starts``."""
    end = starts[b] if b < len(starts) else len(ids)
    return ids[starts[a]: end] if a < len(starts) else ids[:0]
