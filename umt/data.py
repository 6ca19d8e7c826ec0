"""Per-domain audio datasets: folder scan, a memory-mapped 16 kHz cache, balanced segment batches.

Layout: ``ROOT/<domain>/**/*.wav`` (any soundfile format), optionally split into
``ROOT/<domain>/{train,val,test}/``. Without split folders, files are split deterministically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from plumbing.atomic import atomic_text, atomic_write
from umt.audio import SAMPLE_RATE, load, normalize_loudness
from umt.augment import pitch_shift_segment
from umt.errors import UmtError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1
AUDIO_EXTENSIONS = {f".{ext.lower()}" for ext in sf.available_formats()} | {".aif", ".oga"}


def find_domains(root: Path, domains: list[str] | None = None) -> list[str]:
    """Domain names: the given ones (each must be a folder) or every sub-folder of ``root``."""
    if not root.is_dir():
        raise UmtError(f"data root {root} is not a folder")
    manifest = root / "manifest.json"
    if not domains and manifest.is_file():  # a data.synth build names its instruments
        domains = json.loads(manifest.read_text()).get("instruments") or None
    if domains:
        for name in domains:
            if not (root / name).is_dir():
                raise UmtError(f"domain folder {root / name} does not exist")
        return list(domains)
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise UmtError(f"no domain folders under {root} (expected ROOT/<instrument>/*.wav)")
    return found


def audio_files(folder: Path) -> list[Path]:
    """Audio files below ``folder``, recursively, sorted."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def split_files(domain_dir: Path) -> dict[str, list[Path]]:
    """Files per split: from ``train/val/test`` folders if present, else a deterministic split.

    The fallback orders files by a hash of their relative path, so adding a file never moves
    another file to a different split... except for the sizes of val and test (10% each).
    """
    if (domain_dir / "train").is_dir():
        return {s: audio_files(domain_dir / s) if (domain_dir / s).is_dir() else [] for s in SPLITS}
    files = audio_files(domain_dir)
    files.sort(key=lambda p: hashlib.sha1(str(p.relative_to(domain_dir)).encode()).hexdigest())
    n_hold = len(files) // 10 if len(files) >= 10 else (1 if len(files) >= 3 else 0)
    return {
        "val": files[:n_hold],
        "test": files[n_hold : 2 * n_hold],
        "train": sorted(files[2 * n_hold :]),
    }


def _source_hash(files: dict[str, dict[str, list[Path]]], extra: str) -> str:
    h = hashlib.sha1(extra.encode())
    for domain in sorted(files):
        for split in SPLITS:
            for p in files[domain][split]:
                st = p.stat()
                h.update(f"{domain}|{split}|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


@dataclass
class DomainAudio:
    """One domain's split: all files concatenated as int16, with each file's (offset, length)."""

    samples: np.ndarray  # (N,) int16, memory-mapped
    spans: np.ndarray  # (files, 2) int64: offset, length

    def segment(self, file: int, start: int, length: int) -> np.ndarray:
        """Float32 samples ``[start, start + length)`` of file ``file``."""
        offset = int(self.spans[file, 0]) + start
        return self.samples[offset : offset + length].astype(np.float32) / 32768.0


def _save_npy(path: Path, data: np.ndarray) -> None:
    """``np.save`` through an open file: given a name, numpy would append ``.npy`` to it."""
    with open(path, "wb") as f:
        np.save(f, data)


def _write_split(paths: list[Path], target: Path, min_len: int) -> list[dict]:
    """Decode, normalise and concatenate files into ``target`` (.npy); return the file table."""
    chunks, table, offset = [], [], 0
    for path in paths:
        try:
            wav = normalize_loudness(load(path))
        except UmtError as err:
            log.warning("skipping unreadable file: %s", err)
            continue
        if len(wav) < min_len:
            log.warning("skipping %s: %.2f s is shorter than one segment", path, len(wav) / 16e3)
            continue
        chunks.append((np.clip(wav, -1, 1) * 32767).astype(np.int16))
        table.append({"path": str(path), "offset": offset, "length": len(wav)})
        offset += len(wav)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    atomic_write(target, lambda tmp: _save_npy(tmp, data))
    return table


def build_cache(
    root: str | Path,
    cache_dir: str | Path,
    domains: list[str] | None = None,
    min_len: int = SAMPLE_RATE,
    min_domains: int = 2,
) -> Path:
    """Decode every domain's audio into a cache, unless an up-to-date one exists.

    Args:
        root: Dataset folder ``ROOT/<domain>/...``.
        cache_dir: Where caches live; each dataset gets a sub-folder keyed by its path.
        domains: Domains to use (default: all sub-folders).
        min_len: Files shorter than this many samples are skipped with a warning.
        min_domains: Fewer usable domains is an error (2 for training, 1 for fine-tuning).

    Returns:
        The folder holding ``manifest.json`` and one ``<domain>.<split>.npy`` per split.

    Raises:
        UmtError: a missing or empty domain folder, too few domains, no usable training audio.
    """
    root = Path(root).resolve()
    names = find_domains(root, domains)
    if len(names) < min_domains:
        raise UmtError(f"need at least {min_domains} domains under {root}, found {names}")
    files = {name: split_files(root / name) for name in names}
    for name, splits in files.items():
        if not splits["train"]:
            raise UmtError(f"domain folder {root / name} holds no audio files for training")
    key = hashlib.sha1(f"{root}|{','.join(names)}".encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"{root.name}-{key}"
    digest = _source_hash(files, f"{CACHE_FORMAT}|{min_len}")
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source_hash") == digest:
            return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"format": CACHE_FORMAT, "root": str(root), "source_hash": digest, "domains": {}}
    for name in names:
        entry = {}
        for split in SPLITS:
            table = _write_split(files[name][split], out / f"{name}.{split}.npy", min_len)
            seconds = sum(f["length"] for f in table) / SAMPLE_RATE
            entry[split] = {"files": table, "seconds": seconds}
        if not entry["train"]["files"]:
            raise UmtError(f"domain {name}: no training file is readable and one segment long")
        manifest["domains"][name] = entry
    atomic_text(manifest_path, json.dumps(manifest, indent=1))
    return out


def open_cache(cache: str | Path, split: str) -> dict[str, DomainAudio]:
    """Memory-map one split of every domain of a cache built by :func:`build_cache`.

    Falls back to the training audio for a domain whose requested split is empty.
    """
    cache = Path(cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    out = {}
    for name, entry in manifest["domains"].items():
        use = split if entry[split]["files"] else "train"
        spans = np.array([[f["offset"], f["length"]] for f in entry[use]["files"]], np.int64)
        out[name] = DomainAudio(np.load(cache / f"{name}.{use}.npy", mmap_mode="r"), spans)
    return out


def cached_paths(cache: str | Path, split: str) -> dict[str, list[str]]:
    """Source path of every file :func:`open_cache` maps, per domain, in the order of its spans.

    Maps cached files back to the files (and so the pieces) they came from; the split falls back
    to ``train`` exactly as in :func:`open_cache`, so index ``i`` here is span ``i`` there.
    """
    manifest = json.loads((Path(cache) / "manifest.json").read_text())
    out = {}
    for name, entry in manifest["domains"].items():
        use = split if entry[split]["files"] else "train"
        out[name] = [f["path"] for f in entry[use]["files"]]
    return out


class SegmentSampler:
    """Draws balanced batches: ``batch_per_domain`` segments from every domain, every call.

    Args:
        audio: Domain name -> cached audio (see :func:`open_cache`).
        domains: Domain order; a segment's label is its index here.
        segment: Samples per segment.
        batch_per_domain: Segments per domain per batch.
        seed: Seed of the sampler's generator (its state rides in checkpoints).
        silence_db: Segments with RMS below this level are redrawn (up to 10 times).
        augment: Whether to pitch-shift a sub-segment of the encoder's copy.
        shift_semitones: Largest augmentation shift.
    """

    def __init__(
        self,
        audio: dict[str, DomainAudio],
        domains: list[str],
        segment: int,
        batch_per_domain: int,
        seed: int = 0,
        silence_db: float = -50.0,
        augment: bool = True,
        shift_semitones: float = 0.5,
    ) -> None:
        self.audio, self.domains = audio, domains
        self.segment, self.batch_per_domain = segment, batch_per_domain
        self.silence_db, self.augment, self.shift = silence_db, augment, shift_semitones
        self.rng = np.random.default_rng(seed)

    def _draw(self, audio: DomainAudio) -> np.ndarray:
        lengths = audio.spans[:, 1]
        usable = np.maximum(lengths - self.segment + 1, 0).astype(np.float64)
        for _ in range(10):
            file = int(self.rng.choice(len(usable), p=usable / usable.sum()))
            start = int(self.rng.integers(0, usable[file]))
            seg = audio.segment(file, start, self.segment)
            rms = float(np.sqrt(np.mean(np.square(seg)) + 1e-12))
            if 20 * np.log10(rms) >= self.silence_db:
                break
        return seg

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One balanced batch.

        Returns:
            x: (K * B, T) clean audio, the decoders' targets, domain-major order.
            x_aug: (K * B, T) the encoder's (augmented) input.
            labels: (K * B,) int64 domain index.
        """
        clean, aug, labels = [], [], []
        for k, name in enumerate(self.domains):
            for _ in range(self.batch_per_domain):
                seg = self._draw(self.audio[name])
                clean.append(seg)
                aug.append(pitch_shift_segment(seg, self.rng, self.shift) if self.augment else seg)
                labels.append(k)
        return (
            torch.from_numpy(np.stack(clean)),
            torch.from_numpy(np.stack(aug)),
            torch.tensor(labels),
        )

    def state_dict(self) -> dict:
        """The generator's state as plain types."""
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state
