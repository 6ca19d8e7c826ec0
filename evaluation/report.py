"""Aggregate per-clip scores into per-pair tables; write Markdown, JSON and spectrogram figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from evaluation.timbre import TimbreClassifier
from plumbing.atomic import atomic_text, atomic_write
from umt import audio

# (key, column title, better when higher?) in table order.
METRICS = (
    ("rpa", "RPA ↑", True),
    ("voicing", "voicing ↑", True),
    ("chroma", "chroma ↑", True),
    ("target_prob", "P(target) ↑", True),
    ("top1", "top-1 ↑", True),
    ("mel_db", "log-mel dB ↓", False),
    ("mr_stft", "MR-STFT ↓", False),
)
EXPLAIN = """\
- **RPA**: raw pitch accuracy, share of the source's voiced 10 ms frames where the output's f0
  (torchcrepe tiny) is within 50 cents; monophonic clips only. **voicing**: share of frames where
  output and source agree on sounding/silent. **chroma**: cosine similarity of constant-Q chroma
  with the source (all clips). 1.0 = pitch content kept.
- **P(target)**, **top-1**: the timbre classifier's probability of the target instrument and the
  share of clips it ranks first. The classifier was trained on the dataset's train renders.
- **log-mel dB**, **MR-STFT**: distance to the target instrument playing the same notes
  (loudness-matched); 0 = identical.
- Systems: **model** the translation; **reconstruction** the model fed the target render itself
  (upper bound; its pitch and chroma are scored against that render, whose notes data.synth may
  have moved by octaves into the target's range); **transcribe_render** pitch-track (or
  constant-Q peak-pick chords), then render on the target's SoundFont (the classic pipeline);
  **identity** the untouched source.
"""


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(vals)) if vals else None


def _aggregate(rows: list[dict], systems: list[str]) -> dict[str, dict[str, float | None]]:
    return {s: {k: _mean([r["systems"][s][k] for r in rows]) for k, _, _ in METRICS}
            | {"clips": len(rows)} for s in systems}


def summarize(rows: list[dict], clf: TimbreClassifier, cfg: object, systems: list[str]) -> dict:
    """The report: settings, classifier accuracy, per-pair and overall means, each clip's scores."""
    pairs = sorted({r["pair"] for r in rows})
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()
                if k != "timbre"}
    return {
        "settings": settings | {"timbre": asdict(clf.cfg)},
        "classifier": {"classes": clf.classes, "test_accuracy": clf.test_accuracy},
        "pairs": {p: _aggregate([r for r in rows if r["pair"] == p], systems) for p in pairs},
        "overall": _aggregate(rows, systems),
        "clips": rows,
    }


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def markdown(report: dict) -> str:
    """The report as a Markdown table: one row per (pair, system), then overall rows."""
    head = "| pair | system | clips | " + " | ".join(t for _, t, _ in METRICS) + " |"
    lines = ["# Translation evaluation", "",
             f"Timbre classifier accuracy on real test renders: "
             f"{report['classifier']['test_accuracy']:.3f} "
             f"({len(report['classifier']['classes'])} classes: "
             f"{', '.join(report['classifier']['classes'])})", "",
             head, "|" + "---|" * (3 + len(METRICS))]
    groups = list(report["pairs"].items()) + [("overall", report["overall"])]
    for pair, by_system in groups:
        for system, m in by_system.items():
            cells = " | ".join(_fmt(m[k]) for k, _, _ in METRICS)
            lines.append(f"| {pair} | {system} | {m['clips']} | {cells} |")
    return "\n".join(lines + side_by_side(groups) + ["", EXPLAIN])


SIDE_BY_SIDE = ("model", "transcribe_render", "identity")
HEADLINE = ("rpa", "target_prob", "mel_db")


def side_by_side(groups: list[tuple[str, dict]]) -> list[str]:
    """Markdown lines: per pair, the headline metrics of the model and both baselines in one
    cell each (``model / transcribe_render / identity``), and how often the model wins."""
    if not all(s in groups[0][1] for s in SIDE_BY_SIDE):
        return []
    titles = {k: t for k, t, _ in METRICS}
    lines = ["", f"## Side by side: {' / '.join(SIDE_BY_SIDE)}", "",
             "| pair | " + " | ".join(titles[k] for k in HEADLINE) + " |",
             "|---|" + "---|" * len(HEADLINE)]
    for pair, by_system in groups:
        cells = [" / ".join(_fmt(by_system[s][k]) for s in SIDE_BY_SIDE) for k in HEADLINE]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    lines.append("")
    for key, title, higher in METRICS:
        if key not in HEADLINE:
            continue
        for rival in SIDE_BY_SIDE[1:]:
            scored = [(m["model"][key], m[rival][key]) for _, m in groups[:-1]
                      if m["model"][key] is not None and m[rival][key] is not None]
            wins = sum((a > b) if higher else (a < b) for a, b in scored)
            lines.append(f"- {title}: the model beats {rival} on {wins} of {len(scored)} pairs")
    return lines


def write_report(out: Path, report: dict) -> None:
    """Write ``report.md`` and ``report.json`` into ``out`` (each atomically)."""
    atomic_text(out / "report.json", json.dumps(_clean(report), indent=1, allow_nan=False))
    atomic_text(out / "report.md", markdown(report))


def _clean(v: object) -> object:
    """NaN (a metric that does not apply, e.g. f0 on chords) -> None, i.e. JSON null."""
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def spectrogram_figure(folder: Path, systems: list[str]) -> None:
    """``spectrograms.png`` in a clip folder: the source, each of ``systems``' outputs (e.g. the
    model and the transcribe-then-render baseline), then the ground truth, side by side."""
    path = folder / "spectrograms.png"
    if path.is_file():
        return
    import matplotlib

    matplotlib.use("Agg")
    import librosa
    import matplotlib.pyplot as plt

    names = ("source", *systems, "ground_truth")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), sharey=True)
    for ax, name in zip(axes, names, strict=True):
        wav = audio.load(folder / f"{name}.wav")
        S = librosa.feature.melspectrogram(y=wav, sr=audio.SAMPLE_RATE, n_fft=1024,
                                           hop_length=256, n_mels=128)
        img = librosa.power_to_db(S, ref=np.max, top_db=80)
        ax.imshow(img, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, wav.size / audio.SAMPLE_RATE, 0, 128))
        ax.set_title(name)
        ax.set_xlabel("seconds")
    axes[0].set_ylabel("mel bin")
    fig.suptitle(folder.name)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    finally:
        plt.close(fig)
