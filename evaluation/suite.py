"""The evaluation run: translate test clips, score them and the baselines, write the report."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from data.instruments import SoundFont, program_of, resolve_soundfonts
from data.render import render
from data.synth import load_manifest
from evaluation.clips import Clip, parse_pairs, pick_clips
from evaluation.distance import log_mel_distance, mr_stft_distance
from evaluation.pitch import PitchTrack, chroma_similarity, pitch_scores, track_pitch
from evaluation.timbre import TimbreClassifier, TimbreConfig, load_or_train
from evaluation.transcribe import transcribe_monophonic, transcribe_polyphonic
from plumbing.atomic import atomic_text
from umt import audio
from umt.errors import UmtError

SYSTEMS = ("model", "reconstruction", "transcribe_render", "identity")


class TranslatorLike(Protocol):
    """What the suite needs of a model: its domains, and audio in -> audio out at 16 kHz."""

    domains: list[str]

    def __call__(self, wav: np.ndarray, sr: int, to: str, seed: int | None = 0,
                 temperature: float | None = None) -> torch.Tensor:
        """Translate ``wav`` (T,) at ``sr`` to domain ``to``: (T',) float at 16 kHz."""
        ...


@dataclass
class EvalConfig:
    """Settings of one evaluation run."""

    data: Path
    out: Path
    pairs: str
    n: int = 8
    seconds: float = 4.0
    seed: int = 0
    temperature: float | None = None  # the model's sampling temperature (None: its own)
    device: str = "cpu"
    model_id: str = "none"
    cache: Path | None = None  # default: OUT/cache
    split: str = "test"  # the works clips come from: test, or val to choose a setting
    timbre: TimbreConfig = field(default_factory=TimbreConfig)
    # which of SYSTEMS to run: a sweep over the model's settings needs only "model"
    systems: tuple[str, ...] = SYSTEMS


def export_id(path: Path, pitch: str | None = None) -> str:
    """``EvalConfig.model_id`` of an export file: its path, size and modification time, and the
    pitch source asked for (None: the export's own), so a changed file is not mixed in."""
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{pitch}"


def _fonts(manifest: dict) -> dict[str, SoundFont]:
    """The dataset's SoundFonts by name (the baseline re-renders with the target's own)."""
    names = ",".join(p for p in manifest["settings"]["soundfonts"].values())
    return {name: f for name, f in zip(manifest["settings"]["soundfonts"],
                                       resolve_soundfonts(names), strict=True)}


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad (T,) to length n: systems may return a few samples more or less."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    return np.pad(wav[:n], (0, max(0, n - wav.size)))


def _systems(translator: TranslatorLike | None, fonts: dict[str, SoundFont], cfg: EvalConfig
             ) -> dict[str, Callable[[Clip, np.ndarray, np.ndarray], np.ndarray]]:
    """Each system maps (clip, source, ground truth) to its output audio (T,) at 16 kHz."""

    def transcribe_render(clip: Clip, src: np.ndarray, _gt: np.ndarray) -> np.ndarray:
        notes = (transcribe_monophonic(src, cfg.device) if clip.monophonic
                 else transcribe_polyphonic(src))
        if not notes:
            return np.zeros_like(src)
        return audio.normalize_loudness(render(notes, fonts[clip.target_soundfont],
                                               program_of(clip.target)))

    systems: dict[str, Callable[[Clip, np.ndarray, np.ndarray], np.ndarray]] = {}
    if translator is not None:
        def run(wav: np.ndarray, to: str) -> np.ndarray:
            with torch.no_grad():
                out = translator(wav, audio.SAMPLE_RATE, to=to, seed=cfg.seed,
                                 temperature=cfg.temperature)
            return out.float().cpu().numpy()
        systems["model"] = lambda clip, src, _gt: run(src, clip.target)
        systems["reconstruction"] = lambda clip, _src, gt: run(gt, clip.target)
    systems["transcribe_render"] = transcribe_render
    systems["identity"] = lambda _clip, src, _gt: src
    return {name: run_it for name, run_it in systems.items() if name in cfg.systems}


def score(out: np.ndarray, src: np.ndarray, gt: np.ndarray, src_track: PitchTrack | None,
          target: int, clf: TimbreClassifier, device: str) -> dict[str, float]:
    """All metrics of one output (T,) against its source (pitch) and ground truth (distance).

    Args:
        out: The system's output.
        src: What the pitch must follow: the source clip (the ground truth for a reconstruction).
        gt: The target instrument playing the same notes.
        src_track: The pitch track of ``src`` for monophonic clips, else None (no f0 metrics).
        target: Index of the target class in ``clf.classes``.
        clf: The timbre classifier.
        device: Torch device for CREPE.
    """
    nan = float("nan")
    probs = clf.probs(out)
    m = {"rpa": nan, "rca": nan, "voicing": nan}
    if src_track is not None:
        m = pitch_scores(track_pitch(out, device), src_track)
    m["chroma"] = chroma_similarity(out, src)
    m["target_prob"] = float(probs[target])
    m["top1"] = float(np.argmax(probs) == target)
    m["mel_db"] = log_mel_distance(out, gt)
    m["mr_stft"] = mr_stft_distance(out, gt)
    return m


def evaluate(translator: TranslatorLike | None, cfg: EvalConfig) -> dict:
    """Run the whole suite; write ``report.md``, ``report.json``, ``report.html`` (the listening
    page) and per-clip material (wavs and ``spectrograms.png``).

    Outputs already in ``cfg.out/clips`` are reused, so a broken run resumes where it stopped.

    Returns:
        The report as written to ``report.json``.
    """
    from evaluation.listening import write_html
    from evaluation.report import spectrogram_figure, summarize, write_report

    unknown = sorted(set(cfg.systems) - set(SYSTEMS))
    if unknown or not cfg.systems:
        raise UmtError(f"systems must be some of {', '.join(SYSTEMS)}; got "
                       f"{', '.join(cfg.systems) or 'none'}")
    manifest = load_manifest(cfg.data)
    pairs = parse_pairs(cfg.pairs, list(manifest["instruments"]))
    if translator is not None:
        missing = sorted({t for _, t in pairs} - set(translator.domains))
        if missing:
            raise UmtError(f"the model has no decoder for {', '.join(missing)} "
                           f"(it has {', '.join(translator.domains)})")
    _claim_out(cfg)
    clf = load_or_train(cfg.data, manifest, cfg.cache or cfg.out / "cache", cfg.timbre)
    systems = _systems(translator, _fonts(manifest), cfg)
    clips = [c for s, t in pairs for c in pick_clips(cfg.data, manifest, s, t, cfg.n, cfg.seconds,
                                                     cfg.seed, cfg.split)]
    rows = []
    for clip in tqdm(clips, desc="evaluating", unit="clip"):
        rows.append(_eval_clip(clip, systems, clf, cfg))
        folder = cfg.out / "clips" / f"{clip.source}-to-{clip.target}" / clip.id
        spectrogram_figure(folder, [s for s in ("model", "transcribe_render") if s in systems])
    report = summarize(rows, clf, cfg, list(systems))
    write_report(cfg.out, report)
    write_html(cfg.out, report)
    return report


def _claim_out(cfg: EvalConfig) -> None:
    """Translations in OUT belong to one model and dataset: refuse to mix in another's."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    stamp = cfg.out / ".eval.json"
    ident = json.dumps({"model": cfg.model_id, "data": str(Path(cfg.data).resolve()),
                        "seed": cfg.seed, "seconds": cfg.seconds,
                        "temperature": cfg.temperature}
                       | ({"split": cfg.split} if cfg.split != "test" else {}))
    if stamp.is_file() and stamp.read_text() != ident:
        raise UmtError(f"{cfg.out} holds results of another model or dataset; use another --out")
    atomic_text(stamp, ident)


def _eval_clip(clip: Clip, systems: dict, clf: TimbreClassifier, cfg: EvalConfig) -> dict:
    """Produce (or reuse) every system's output for one clip and score them."""
    folder = cfg.out / "clips" / f"{clip.source}-to-{clip.target}" / clip.id
    src, gt = clip.load()
    for name, wav in (("source", src), ("ground_truth", gt)):
        if not (folder / f"{name}.wav").is_file():
            audio.save(folder / f"{name}.wav", wav)
    src_track = track_pitch(src, cfg.device) if clip.monophonic else None
    # A reconstruction must keep the notes it was given: the target render's, which data.synth
    # may have moved by octaves into the target's range (scored against the source, a perfect
    # reconstruction of a cello line moved up for the violin would lose every frame).
    gt_track = (track_pitch(gt, cfg.device) if clip.monophonic and "reconstruction" in systems
                else None)
    target = clf.classes.index(clip.target)
    row = {"pair": f"{clip.source}:{clip.target}", "clip": clip.id, "piece": clip.piece,
           "start": clip.start, "seconds": clip.seconds, "monophonic": clip.monophonic,
           "systems": {}}
    for name, system in systems.items():
        path = folder / f"{name}.wav"
        if name == "identity":
            out = src
        elif path.is_file():
            out = _fit(audio.load(path), src.size)
        else:
            audio.save(path, _fit(system(clip, src, gt), src.size))
            # Score what was saved, so a resumed run gives the same numbers as a fresh one.
            out = _fit(audio.load(path), src.size)
        ref, ref_track = (gt, gt_track) if name == "reconstruction" else (src, src_track)
        row["systems"][name] = score(out, ref, gt, ref_track, target, clf, cfg.device)
    return row
