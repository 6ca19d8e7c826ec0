"""Timbre success: a small CNN on log-mel, trained on the dataset's real renders, says which
instrument a clip sounds like. Trained once per dataset and cached."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from umt import audio
from umt.audio import SAMPLE_RATE

VERSION = 2  # 2: 3000 steps at width 16 (1: 400 at width 8 scored real test renders 0.51)
SILENCE_DB = -40.0  # crops quieter than this under the file's loudest are not shown to the CNN


@dataclass
class TimbreConfig:
    """Features and training of the instrument classifier."""

    n_mels: int = 64
    n_fft: int = 1024
    hop: int = 256
    crop: int = 64  # frames: about 1 s
    width: int = 16  # channels of the first conv block
    steps: int = 3000
    batch: int = 32
    lr: float = 3e-3
    max_files: int = 200  # per instrument: bounds memory and feature time on big datasets
    seed: int = 0


class TimbreCNN(nn.Module):
    """Three conv blocks over a log-mel crop, averaged over time and frequency, then linear."""

    def __init__(self, n_classes: int, width: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                       nn.MaxPool2d(2)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel crops (B, n_mels, frames) -> class logits (B, K)."""
        h = self.body(mel[:, None])  # (B, C, n_mels / 8, frames / 8)
        return self.head(h.mean(dim=(2, 3)))


def log_mel(wav: np.ndarray, cfg: TimbreConfig) -> torch.Tensor:
    """Log-mel (n_mels, F) of audio (T,) at 16 kHz in dB, its mean removed (level-free)."""
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=cfg.n_fft, hop_length=cfg.hop,
                                               n_mels=cfg.n_mels)
    m = 10 * torch.log10(mel(torch.from_numpy(np.asarray(wav, dtype=np.float32))) + 1e-8)
    m = m.clamp(min=m.max() - 80)
    return m - m.mean()


def _loud_starts(mel: torch.Tensor, crop: int) -> np.ndarray:
    """Start frames of crops that are not silence (mean energy within 40 dB of the loudest)."""
    energy = mel.mean(dim=0).numpy()
    if energy.size < crop:
        return np.zeros(0, dtype=int)
    win = np.convolve(energy, np.ones(crop) / crop, mode="valid")
    return np.flatnonzero(win > win.max() + SILENCE_DB / 2)


def _crops(mels: list[torch.Tensor], cfg: TimbreConfig, hop: int) -> torch.Tensor:
    """Every ``hop``-th loud crop of each log-mel: (N, n_mels, crop)."""
    out = [m[:, s:s + cfg.crop] for m in mels for s in _loud_starts(m, cfg.crop)[::hop]]
    return torch.stack(out) if out else torch.zeros(0, cfg.n_mels, cfg.crop)


class TimbreClassifier:
    """The trained CNN with its class names; ``probs`` scores any audio."""

    def __init__(self, net: TimbreCNN, classes: list[str], cfg: TimbreConfig,
                 test_accuracy: float) -> None:
        self.net, self.classes, self.cfg = net.eval(), classes, cfg
        self.test_accuracy = test_accuracy

    @torch.no_grad()
    def probs(self, wav: np.ndarray) -> np.ndarray:
        """Class probabilities (K,) of audio (T,) at 16 kHz: the mean over its 1 s crops."""
        mel = log_mel(wav, self.cfg)
        if mel.shape[1] < self.cfg.crop:  # short clip: pad with the floor, i.e. silence
            mel = torch.nn.functional.pad(mel, (0, self.cfg.crop - mel.shape[1]),
                                          value=float(mel.min()))
        crops = _crops([mel], self.cfg, hop=self.cfg.crop // 4)
        if len(crops) == 0:
            crops = mel[None, :, : self.cfg.crop]
        return self.net(crops).softmax(-1).mean(0).numpy()


def _files(root: Path, manifest: dict, split: str, cfg: TimbreConfig) -> dict[str, list[Path]]:
    """Render paths of each instrument in ``split``, at most ``cfg.max_files`` per instrument."""
    out: dict[str, list[Path]] = {}
    for inst in manifest["instruments"]:
        paths = [root / e["audio"][inst]["path"] for e in manifest["pieces"].values()
                 if e["split"] == split and inst in e["audio"]]
        out[inst] = sorted(paths)[: cfg.max_files]
    return out


def _features(files: dict[str, list[Path]], cfg: TimbreConfig) -> dict[str, list[torch.Tensor]]:
    n = sum(len(v) for v in files.values())
    bar = tqdm(total=n, desc="timbre features", unit="file", leave=False)
    feats: dict[str, list[torch.Tensor]] = {}
    for inst, paths in files.items():
        feats[inst] = []
        for p in paths:
            feats[inst].append(log_mel(audio.load(p), cfg))
            bar.update()
    bar.close()
    return feats


def train_classifier(root: Path, manifest: dict, cfg: TimbreConfig) -> TimbreClassifier:
    """Train on crops of the train renders, class-balanced; measure accuracy on test renders."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    classes = list(manifest["instruments"])
    train = _features(_files(root, manifest, "train", cfg), cfg)
    pool = [[(m, s) for m in train[c] for s in _loud_starts(m, cfg.crop)] for c in classes]
    if any(not p for p in pool):
        raise ValueError("an instrument has no train audio longer than one crop")
    net = TimbreCNN(len(classes), cfg.width)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    for _ in tqdm(range(cfg.steps), desc="timbre classifier", leave=False):
        ys = rng.integers(len(classes), size=cfg.batch)
        picks = [pool[y][rng.integers(len(pool[y]))] for y in ys]
        x = torch.stack([m[:, s:s + cfg.crop] for m, s in picks])  # (B, n_mels, crop)
        x = x + 3.0 * torch.randn(len(x), 1, 1)  # level jitter: the translation's level is unknown
        loss = nn.functional.cross_entropy(net(x), torch.from_numpy(ys))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    test = _features(_files(root, manifest, "test", cfg), cfg)
    correct = total = 0
    with torch.no_grad():
        for y, c in enumerate(classes):
            crops = _crops(test[c], cfg, hop=cfg.crop)
            if len(crops):
                correct += int((net(crops).argmax(-1) == y).sum())
                total += len(crops)
    return TimbreClassifier(net, classes, cfg, correct / total if total else float("nan"))


def cache_key(manifest: dict, cfg: TimbreConfig) -> str:
    """A name that changes whenever the dataset's content or the classifier's settings change."""
    blob = json.dumps([VERSION, manifest["settings"], sorted(manifest["pieces"]), asdict(cfg)],
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_or_train(root: Path, manifest: dict, cache_dir: Path,
                  cfg: TimbreConfig | None = None) -> TimbreClassifier:
    """The classifier for this dataset: from ``cache_dir`` if trained before, else trained now."""
    cfg = cfg or TimbreConfig()
    path = Path(cache_dir) / f"timbre-{cache_key(manifest, cfg)}.pt"
    if path.is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        saved = TimbreConfig(**blob["config"])
        net = TimbreCNN(len(blob["classes"]), saved.width)
        net.load_state_dict(blob["state_dict"])
        return TimbreClassifier(net, blob["classes"], saved,
                                blob["test_accuracy"])
    clf = train_classifier(Path(root), manifest, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"classes": clf.classes, "config": asdict(cfg), "state_dict": clf.net.state_dict(),
                "test_accuracy": clf.test_accuracy}, tmp)
    os.replace(tmp, path)
    return clf
