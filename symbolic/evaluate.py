"""``python -m symbolic eval``: likelihood vs an n-gram, chords vs an HMM, generation metrics.

All numbers come from the test split of the manifest (pieces never seen in training).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import symusic
import torch
from miditok import REMI

from symbolic import hmm as H
from symbolic import metrics as M
from symbolic.api import Composer, UserError
from symbolic.config import DataConfig
from symbolic.data import Piece, bar_slice, load_pieces
from symbolic.defaults import (
    CHORD_GUIDE,
    CHORD_JUDGE,
    CONTINUE_TEMP,
    HARMONY_CANDIDATES,
    HARMONY_CONSONANCE,
    HARMONY_TEMP,
)
from symbolic.grammar import Grammar
from symbolic.model import MusicTransformer, trim_memory
from symbolic.ngram import NGram
from symbolic.sample import SampleConfig, generate
from symbolic.tagger import harmoniser as tagger_harmoniser
from symbolic.tokens import K_BAR, K_PITCH, TokenTable, bar_starts, decode, position_ids

CHORALE_PREFIX = "bach/"  # the corpus names items collection/work
EVAL_SAMPLE = SampleConfig(pitch_temp=0.7, timing_temp=0.7, top_p=0.9)
PROMPT_BARS, CONT_BARS = 4, 4
TAGGER_LABEL = "chord tagger alone (voiced)"  # its row in the eval table
LEAP_BARS = 4  # leaps are counted at every 4th bar line: where a 4-bar window used to restart


@torch.no_grad()
def model_nll(model: MusicTransformer, table: TokenTable, seq: list[int]) -> float:
    """Summed NLL (nats) of ``seq[1:]``, read segment by segment with memory as in training."""
    ids = torch.tensor([seq[:-1]])
    tgt = torch.tensor([seq[1:]])
    pos, bar = position_ids(ids, table, model.cfg.n_pos)
    S, mem, total = model.cfg.seg_len, None, 0.0
    for s in range(0, ids.shape[1], S):
        h, mem = model.decode(ids[:, s:s + S], pos[:, s:s + S], bar[:, s:s + S], mem)
        mem = trim_memory(mem, model.cfg.mem_len)
        logp = torch.log_softmax(model.logits(h)[0].float(), -1)
        total -= float(logp.gather(1, tgt[0, s:s + S, None]).sum())
    return total


def likelihood(composer: Composer, splits: dict[str, list[Piece]], split: str = "test"
               ) -> dict[str, float]:
    """NLL/token and bits/note of the model and the best-order n-gram (picked on validation)
    on the pieces of ``split``."""
    table, bos, eos = composer.table, composer.table.id("BOS_None"), composer.table.id("EOS_None")
    wrap = [[bos, *p.full.tolist(), eos] for p in splits[split]]
    notes = sum(int((table.kind[p.full] == K_PITCH).sum()) for p in splits[split])
    tokens = sum(len(s) - 1 for s in wrap)
    nll = sum(model_nll(composer.model, table, s) for s in wrap)
    ngram = NGram(8, table.size).fit([[bos, *p.full.tolist(), eos] for p in splits["train"]])
    val = [[bos, *p.full.tolist(), eos] for p in splits["val"] or splits["train"][:10]]
    best = 2 + int(np.argmin(ngram.nll_by_order(val)[1:]))  # orders 2..8
    ng = float(ngram.nll_by_order(wrap)[best - 1])
    return {"tokens": tokens, "notes": notes, "model_nll": nll / tokens,
            "model_bpn": nll / math.log(2) / notes, "ngram_order": best,
            "ngram_nll": ng / tokens, "ngram_bpn": ng / math.log(2) / notes}


Harmoniser = Callable[[int, Piece, symusic.Score], list]


def transformer_harmoniser(composer: Composer, pitch_temp: float = HARMONY_TEMP,
                           candidates: int = HARMONY_CANDIDATES,
                           consonance: float = HARMONY_CONSONANCE,
                           context: int | None = None, guide: float = CHORD_GUIDE,
                           judge: float = CHORD_JUDGE) -> Harmoniser:
    """The model's melody->harmony face as a harmoniser (seed = piece index), guided by the
    composer's chord tagger with weights ``guide`` and ``judge`` where it has one."""
    chosen = {"pitch_temp": pitch_temp, "candidates": candidates, "consonance": consonance,
              "context_bars": context, "chord_guide": guide, "chord_judge": judge}

    def run(i: int, piece: Piece, _mel: symusic.Score) -> list:
        sample = SampleConfig(**{**EVAL_SAMPLE.__dict__, **chosen, "seed": i})
        har_ids = composer.seq2seq_tokens(piece.melody.tolist(), True, sample)
        return M.all_notes(decode(composer.tokenizer, har_ids))

    return run


def chord_metrics(tokenizer: REMI, pieces: list[Piece], harmonise: Harmoniser) -> dict[str, float]:
    """Melody->chords on held-out pieces against the real lower voices, per beat.

    Args:
        tokenizer: decodes the pieces' melody and harmony tokens.
        pieces: held-out pieces.
        harmonise: ``f(index, piece, melody score) -> generated lower-voice notes``.

    Returns:
        Per-beat means over the beats where the real lower voices sound: ``pcset_acc``,
        ``jaccard``, ``root_acc``; ``chord_tone_*`` (on-beat melody notes sounding in the lower
        voices); ``consonance_*`` (beats where melody + lower voices form one chord of
        :data:`symbolic.metrics.CONSONANT`, among those where the melody sounds); ``in_key_*``
        (lower-voice notes in the melody's Krumhansl-Schmuckler key); ``leaps_*`` (at every
        ``LEAP_BARS``-th bar line, the highest lower voice moves more than a fifth from the
        beat before; nan without such lines); ``*_gen`` for the harmoniser, ``*_real`` for the
        piece's own lower voices.
    """
    acc, jac, root, tone_gen, tone_real = [], [], [], [], []
    cons: dict[str, list[bool]] = {"gen": [], "real": []}
    in_key: dict[str, list[bool]] = {"gen": [], "real": []}
    leaps: dict[str, list[bool]] = {"gen": [], "real": []}
    for i, p in enumerate(pieces):
        mel_score = decode(tokenizer, p.melody.tolist())
        gen = harmonise(i, p, mel_score)
        real = M.all_notes(decode(tokenizer, p.harmony.tolist()))
        mel, beat = M.all_notes(mel_score), mel_score.ticks_per_quarter
        key_pcs = M.key_pitch_classes(M.find_key(mel)) if mel else frozenset()
        for name, notes in (("gen", gen), ("real", real)):
            in_key[name] += [n.pitch % 12 in key_pcs for n in notes]
        end = max(n.end for n in real + mel)
        lines = M.bar_lines(mel_score, end)[LEAP_BARS::LEAP_BARS]
        for name, notes in (("gen", gen), ("real", real)):
            leaps[name] += M.top_leaps(notes, lines, beat)
        g_sets, r_sets, m_sets = (M.beat_pitch_classes(x, 0, end, beat) for x in (gen, real, mel))
        for t, g, r, m in zip(range(0, end, beat), g_sets, r_sets, m_sets, strict=True):
            if not r:
                continue
            if m:  # a beat where the melody sounds: does it make one chord with the voices?
                cons["gen"].append(M.is_consonant(g | m))
                cons["real"].append(M.is_consonant(r | m))
            acc.append(g == r)
            jac.append(M.jaccard(g, r))
            bass = min(M.sounding(real, t), key=lambda n: n.pitch).pitch % 12
            gen_now = M.sounding(gen, t)
            gbass = min(gen_now, key=lambda n: n.pitch).pitch % 12 if gen_now else None
            root.append(M.chord_root(g, gbass) == M.chord_root(r, bass))
        for n in mel:
            if n.time % beat == 0:
                k = n.time // beat
                if k < len(r_sets) and r_sets[k]:
                    tone_gen.append(n.pitch % 12 in g_sets[k])
                    tone_real.append(n.pitch % 12 in r_sets[k])
    return {"pcset_acc": float(np.mean(acc)), "jaccard": float(np.mean(jac)),
            "root_acc": float(np.mean(root)), "chord_tone_gen": float(np.mean(tone_gen)),
            "chord_tone_real": float(np.mean(tone_real)), "beats": len(acc),
            **{f"consonance_{k}": float(np.mean(v)) for k, v in cons.items()},
            **{f"in_key_{k}": float(np.mean(v)) for k, v in in_key.items()},
            **{f"leaps_{k}": float(np.mean(v)) if v else math.nan for k, v in leaps.items()}}


def _stats(score, bars: int) -> dict[str, float]:
    """Continuation statistics of one decoded continuation of ``bars`` bars."""
    notes = M.all_notes(score)
    beat = score.ticks_per_quarter
    sig = score.time_signatures[0] if len(score.time_signatures) else None
    bar_ticks = beat * 4 * sig.numerator // sig.denominator if sig else 4 * beat
    end = bars * bar_ticks
    return {"pc_entropy": M.pitch_class_entropy(notes), "scale": M.scale_consistency(notes),
            "groove": M.groove_consistency(notes, bar_ticks, 16),
            "empty_beats": M.empty_beat_rate(notes, 0, end, beat),
            "polyphony": M.polyphony(notes, 0, end, beat // 4)}


def continuation_metrics(composer: Composer, pieces: list[Piece],
                         pitch_temp: float = CONTINUE_TEMP) -> dict[str, dict]:
    """Statistics of generated vs real continuations of the same 4-bar prompts."""
    table, rows = composer.table, {"gen": [], "real": []}
    for i, p in enumerate(pieces):
        starts = bar_starts(p.full, table)
        if len(starts) < PROMPT_BARS + CONT_BARS:
            continue
        prompt = [table.id("BOS_None"), *bar_slice(p.full, starts, 0, PROMPT_BARS).tolist()]
        g = Grammar(table, exact=True)
        for tok in prompt:
            g.consume(tok)
        g.max_bars = PROMPT_BARS + CONT_BARS
        g.timesigs = [prompt[1 + s + 1] for s in bar_starts(np.asarray(prompt[1:]), table)]
        g.timesigs += g.timesigs[-1:] * CONT_BARS
        sample = SampleConfig(**{**EVAL_SAMPLE.__dict__, "seed": i, "pitch_temp": pitch_temp})
        new = generate(composer.model, table, prompt, g, sample, max_new=128 * CONT_BARS)
        first_bar = next((k for k, t in enumerate(new) if table.kind[t] == K_BAR), len(new))
        real = bar_slice(p.full, starts, PROMPT_BARS, PROMPT_BARS + CONT_BARS).tolist()
        rows["gen"].append(_stats(decode(composer.tokenizer, new[first_bar:]), CONT_BARS))
        rows["real"].append(_stats(decode(composer.tokenizer, real), CONT_BARS))
    out = {}
    for key in rows["gen"][0] if rows["gen"] else []:
        g = np.array([r[key] for r in rows["gen"]])
        r = np.array([r[key] for r in rows["real"]])
        ok = ~(np.isnan(g) | np.isnan(r))
        out[key] = {"gen": float(g[ok].mean()), "real": float(r[ok].mean()),
                    "mad": float(np.abs(g[ok] - r[ok]).mean())}
    return {"prompts": len(rows["gen"]), "stats": out}


def remix_metrics(composer: Composer, pieces: list[Piece]) -> dict[str, float]:
    """Share of pieces whose kept dimension is identical after remix, and share of notes changed."""
    kept: dict[str, list] = {"rhythm": [], "pitch": []}
    changed: dict[str, list] = {"rhythm": [], "pitch": []}
    for i, p in enumerate(pieces):
        src = decode(composer.tokenizer, p.full.tolist())
        for keep in kept:
            out = composer.remix(src, keep, SampleConfig(seed=i))
            kept[keep].append(_notes_key(src, keep) == _notes_key(out, keep))
            a, b = Counter(_notes_key(src, "all")), Counter(_notes_key(out, "all"))
            changed[keep].append(1 - sum((a & b).values()) / max(1, sum(a.values())))
    return {f"{k}_kept": float(np.mean(v)) for k, v in kept.items()} | {
        f"{k}_notes_changed": float(np.mean(v)) for k, v in changed.items()}


def _notes_key(score, keep: str) -> list[tuple[int, ...]]:
    """Sorted (onset, duration) for rhythm, (onset, pitch) for pitch, or all three."""
    notes = M.all_notes(score)
    if keep == "rhythm":
        return sorted((n.time, n.duration) for n in notes)
    if keep == "pitch":
        return sorted((n.time, n.pitch) for n in notes)
    return sorted((n.time, n.pitch, n.duration) for n in notes)


def data_config(data: str, cache_dir: str) -> DataConfig:
    """``chorales``, ``corpus`` (the cache of ``python -m symbolic corpus``) or a MIDI folder."""
    if data in ("chorales", "corpus"):
        return DataConfig(source=data, cache_dir=cache_dir)
    return DataConfig(source="folder", root=data, cache_dir=cache_dir)


def harmony_pieces(pieces: list[Piece], data: str) -> list[Piece]:
    """The pieces the harmony metrics use: in the corpus, the Bach chorales (names ``bach/...``:
    four-part harmony under a soprano, the music the chord targets speak of); else all."""
    return [p for p in pieces if p.name.startswith(CHORALE_PREFIX)] if data == "corpus" else pieces


def spread(pieces: list, count: int) -> list:
    """``count`` pieces evenly spaced over the list (all of them for 0), so a split sorted by
    collection gives prompts from every collection, not the first one only."""
    if not count or count >= len(pieces):
        return pieces
    return [pieces[i * len(pieces) // count] for i in range(count)]


def evaluate(model_path: str | None, data: str, cache_dir: str, pieces: int, prompts: int,
             seed: int = 0, split: str = "test", harmony_temp: float = HARMONY_TEMP,
             continue_temp: float = CONTINUE_TEMP, harmony_candidates: int = HARMONY_CANDIDATES,
             harmony_consonance: float = HARMONY_CONSONANCE,
             harmony_context: int | None = None, tagger: str | None = None,
             harmony_guide: float = CHORD_GUIDE, harmony_judge: float = CHORD_JUDGE) -> dict:
    """Runs every metric on the held-out ``split`` (``val`` to choose a setting, ``test`` to
    report); ``pieces``/``prompts`` cap the generation metrics; ``harmony_*`` set the
    melody->harmony sampling (:class:`symbolic.sample.SampleConfig`); ``tagger`` is the chord
    tagger's file (None: the shipped one; ``"none"``: no guidance), ``harmony_guide`` and
    ``harmony_judge`` its weights."""
    if split not in ("test", "val"):
        raise UserError(f"--split must be 'test' or 'val', got {split!r}")
    torch.manual_seed(seed)
    composer = Composer.load(model_path, tagger)
    splits = load_pieces(data_config(data, cache_dir), composer.tokenizer)
    if not splits[split]:
        raise UserError(f"the {split} split is empty (too few pieces)")
    test = splits[split]
    chorales = harmony_pieces(test, data)
    gen_pieces = chorales[:pieces] if pieces else chorales
    if not gen_pieces:
        raise UserError("no held-out piece for the harmony metrics")
    report: dict = {"split": split, "test_pieces": len(test), "harmony_pieces": len(gen_pieces),
                    "harmony_temp": harmony_temp, "continue_temp": continue_temp,
                    "harmony_candidates": harmony_candidates,
                    "harmony_consonance": harmony_consonance,
                    "harmony_context": composer.context_bars(
                        SampleConfig(context_bars=harmony_context)),
                    "harmony_guide": harmony_guide if composer.tagger else 0.0,
                    "harmony_judge": harmony_judge if composer.tagger else 0.0}
    tok = composer.tokenizer
    model_harm = transformer_harmoniser(composer, harmony_temp, harmony_candidates,
                                        harmony_consonance, harmony_context, harmony_guide,
                                        harmony_judge)
    hmm_train = harmony_pieces(splits["train"], data)
    sections = (("likelihood", lambda: likelihood(composer, splits, split)),
                ("chords", lambda: chord_metrics(tok, gen_pieces, model_harm)),
                # the HMM baseline: fitted on the training chorales, scored on the same pieces
                ("hmm", lambda: chord_metrics(tok, gen_pieces, H.harmoniser(hmm_train, tok))),
                # the tagger alone: its minimum-Bayes-risk sets, voiced (tagger.voice_set)
                ("tagger", lambda: chord_metrics(tok, gen_pieces, tagger_harmoniser(
                    composer.tagger)) if composer.tagger else {}),
                ("continuation", lambda: continuation_metrics(
                    composer, spread(test, prompts) if prompts else [], continue_temp)),
                ("remix", lambda: remix_metrics(composer, gen_pieces[:4])))
    for name, fn in sections:
        start = time.time()
        report[name] = fn()
        report[name]["seconds"] = round(time.time() - start, 1)
    return report


def _chord_rows(ch: dict, hmm: dict, tagger: dict) -> list[str]:
    """Melody->chords table: the transformer, the HMM baseline, the chord tagger alone (when
    there is one), the real lower voices."""
    head = f"melody->chords ({ch['beats']} beats)"
    rows = [f"{head:30s}  pc-set acc  jaccard  root acc  chord-tone  consonance  in key  "
            f"leaps at {LEAP_BARS}-bar lines"]
    systems = [("transformer", ch), (H.LABEL, hmm)]
    if tagger:
        systems.append((TAGGER_LABEL, tagger))
    for name, c in systems:
        rows.append(f"{name:30s}  {c['pcset_acc']:10.3f}  {c['jaccard']:7.3f}  "
                    f"{c['root_acc']:8.3f}  {c['chord_tone_gen']:10.3f}  "
                    f"{c['consonance_gen']:10.3f}  {c['in_key_gen']:6.3f}  {c['leaps_gen']:6.3f}")
    rows.append(f"{'real lower voices':30s}  {'':10s}  {'':7s}  {'':8s}  "
                f"{ch['chord_tone_real']:10.3f}  {ch['consonance_real']:10.3f}  "
                f"{ch['in_key_real']:6.3f}  {ch['leaps_real']:6.3f}")
    return rows


def _context_words(bars: int) -> str:
    return f"each window continuing the last {bars} bars" if bars else "windows afresh"


def format_table(r: dict) -> str:
    """The report as plain-text tables."""
    lk, ch, co, rm = r["likelihood"], r["chords"], r["continuation"], r["remix"]
    lines = [
        f"held-out {r['split']} split: {r['test_pieces']} pieces, {lk['tokens']} "
        f"tokens, {lk['notes']} notes; harmony on {r['harmony_pieces']} of them "
        f"(pitch temperature {r['harmony_temp']:g}, {r['harmony_candidates']} candidates per "
        f"window, consonance weight {r['harmony_consonance']:g}, "
        f"{_context_words(r['harmony_context'])}, chord tagger guide "
        f"{r['harmony_guide']:g} and judge {r['harmony_judge']:g})",
        "model                 NLL/token (nats)  bits/note",
        f"transformer           {lk['model_nll']:16.3f}  {lk['model_bpn']:9.2f}",
        f"{lk['ngram_order']}-gram Witten-Bell    {lk['ngram_nll']:16.3f}  {lk['ngram_bpn']:9.2f}",
        "",
        *_chord_rows(ch, r["hmm"], {k: v for k, v in r["tagger"].items() if k != "seconds"}),
        "",
        f"continuation ({co['prompts']} prompts of {PROMPT_BARS} bars, {CONT_BARS} bars each, "
        f"pitch temperature {r['continue_temp']:g})",
        "metric          generated   real    mean |diff|",
    ]
    for key, v in co["stats"].items():
        lines.append(f"{key:14s}  {v['gen']:9.3f}  {v['real']:6.3f}  {v['mad']:9.3f}")
    lines += ["", f"remix: rhythm kept {rm['rhythm_kept']:.0%} (notes changed "
              f"{rm['rhythm_notes_changed']:.0%}), pitch kept {rm['pitch_kept']:.0%} "
              f"(notes changed {rm['pitch_notes_changed']:.0%})"]
    return "\n".join(lines)
