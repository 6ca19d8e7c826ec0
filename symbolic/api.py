"""Library entry: load a model, read MIDI with clear errors, and the four composing operations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic
import torch

from symbolic.align import SourceNotes
from symbolic.checkpoint import model_from_export, read_export
from symbolic.consensus import choose
from symbolic.data import bar_slice
from symbolic.grammar import Grammar
from symbolic.guide import ChordGuide
from symbolic.metrics import all_notes, beat_pitch_classes
from symbolic.midi_io import UserError, read_midi, select_track, write_midi
from symbolic.model import MusicTransformer
from symbolic.sample import SampleConfig, fill, generate, generate_many
from symbolic.tagger import TaggerModel
from symbolic.tagger import load as load_tagger
from symbolic.tokens import (
    K_DUR,
    K_PITCH,
    bar_starts,
    build_tokenizer,
    decode,
    encode,
    position_ids,
    token_table,
)

__all__ = ["Composer", "UserError", "read_midi", "select_track", "write_midi"]

DEFAULT_MODEL = Path(__file__).resolve().parent / "pretrained" / "corpus_small.pt"
DEFAULT_TAGGER = Path(__file__).resolve().parent / "pretrained" / "tagger.pt"


def stack(first: symusic.Score, *others: symusic.Score) -> symusic.Score:
    """Puts the tracks of several decoded scores (same resolution) into one score."""
    out = first.copy()
    for s in others:
        for t in s.tracks:
            out.tracks.append(t)
    return out


def window_start(starts: np.ndarray, n_src: int, written: list[int], a: int, ctx: int,
                 max_src: int, max_tgt: int) -> int:
    """First source bar of the window whose new bars start at bar ``a``: ``ctx`` bars back, or
    fewer where those bars would crowd out the new ones: the source from there to the end of
    bar ``a`` must fit the encoder's ``max_src`` tokens (the window is cut after them), and the
    output already written for them (``written``: ids per bar) half the decoder's ``max_tgt``.

    Args:
        starts: index of every Bar token in the source (``n_src`` ids).
        written: ids of the output per bar written so far (at least ``a`` bars).
    """
    end = starts[a + 1] if a + 1 < len(starts) else n_src
    first = max(0, a - ctx)
    while first < a and (end - starts[first] > max_src or sum(written[first:a]) > max_tgt // 2):
        first += 1
    return first


class Composer:
    """A loaded model plus its tokenizer, ready to continue, harmonise, write melodies, remix."""

    def __init__(self, model: MusicTransformer, meta: dict | None = None,
                 tagger: TaggerModel | None = None):
        self.model = model.eval()
        self.tagger = tagger  # the chord tagger that guides harmonize (symbolic.guide), or None
        self.tokenizer = build_tokenizer()
        self.table = token_table(self.tokenizer)
        meta = meta or {}
        self.window_bars = int(meta.get("window_bars", 4))
        self.max_src = int(meta.get("max_src_len", 160))
        self.max_tgt = int(meta.get("max_tgt_len", 384))

    @classmethod
    def load(cls, path: str | Path | None = None, tagger: str | Path | None = None) -> Composer:
        """Loads an export (default: the shipped corpus model) and a chord tagger (default: the
        shipped one where it exists; ``"none"``: no tagger, so no chord guidance).

        Raises:
            UserError: a missing or foreign model or tagger file.
        """
        path = Path(path) if path else DEFAULT_MODEL
        blob = read_export(path)  # read once: the weights and the metadata
        if tagger is None:
            tagger = DEFAULT_TAGGER if DEFAULT_TAGGER.exists() else "none"
        chords = None if str(tagger) == "none" else load_tagger(tagger)
        return cls(model_from_export(blob), blob.get("meta", {}), chords)

    def tokens(self, score: symusic.Score) -> list[int]:
        """REMI ids of all notes of ``score`` merged; ``UserError`` if nothing is left."""
        ids = encode(self.tokenizer, score)
        if not any(self.table.kind[i] == K_PITCH for i in ids):
            raise UserError("no notes left after tokenizing (pitch range 21-108)")
        return ids

    def _timesigs(self, ids: list[int]) -> list[int]:
        """TimeSig id of every bar (the token after each Bar)."""
        return [ids[i + 1] for i in bar_starts(np.asarray(ids), self.table) if i + 1 < len(ids)]

    def continue_score(self, score: symusic.Score, bars: int,
                       sample: SampleConfig | None = None) -> symusic.Score:
        """The piece (all tracks merged) followed by ``bars`` generated bars, as one track."""
        if bars < 1:
            raise UserError("--bars must be at least 1")
        ids = self.tokens(score)
        prompt = [self.table.id("BOS_None"), *ids]
        sigs = self._timesigs(ids)
        g = Grammar(self.table, exact=True, timesigs=sigs + sigs[-1:] * bars)
        for tok in prompt:
            g.consume(tok)
        g.max_bars = g.bars + bars
        new = generate(self.model, self.table, prompt, g, sample or SampleConfig(),
                       max_new=96 * bars)
        return decode(self.tokenizer, ids + new, name="continued")

    @torch.no_grad()
    def seq2seq_tokens(self, src_ids: list[int], to_harmony: bool,
                       sample: SampleConfig) -> list[int]:
        """Harmony (or melody) ids for a whole source, window by window of ``window_bars`` bars.

        Each window after the first starts ``sample.context_bars`` bars back (default half a
        window) and its decoder is given the output already kept for those bars, so only the
        bars after them are new: without it every window began afresh and the voices jumped
        at each window's first beat. The output holds exactly the source's bars, in its meters.
        Dense music reaches back less (:func:`window_start`).

        Raises:
            UserError: when ``context_bars`` is not below the model's window.
        """
        src = np.asarray(src_ids)
        starts = bar_starts(src, self.table)
        ctx = self.context_bars(sample)
        task = self.table.id("ToHarmony_None" if to_harmony else "ToMelody_None")
        limits = (self.max_src, self.max_tgt) if to_harmony else (self.max_tgt, self.max_src)
        guide = self._guide(src_ids, sample) if to_harmony else None
        bars: list[list[int]] = []  # output ids of every source bar written so far
        a = w = 0
        while a < len(starts):
            first = window_start(starts, len(src), [len(b) for b in bars], a, ctx, *limits)
            window = bar_slice(src, starts, first, first + self.window_bars)
            bars += self._window(window, [t for bar in bars[first:a] for t in bar], a - first,
                                 task, limits, sample, w, first, guide)
            a, w = first + self.window_bars, w + 1
        return [t for bar in bars for t in bar]

    def context_bars(self, sample: SampleConfig) -> int:
        """Bars each window reaches back under ``sample`` (None: half the model's window).

        Raises:
            UserError: when that is not below the window.
        """
        ctx = self.window_bars // 2 if sample.context_bars is None else sample.context_bars
        if ctx >= self.window_bars:
            raise UserError(f"the window context (--context-bars) must be below the model's "
                            f"window of {self.window_bars} bars, got {ctx}")
        return ctx

    def _guide(self, src_ids: list[int], sample: SampleConfig) -> ChordGuide | None:
        """The chord tagger's guide for a melody, when there is a tagger and a weight for it."""
        if self.tagger is None or not (sample.chord_guide or sample.chord_judge):
            return None
        return ChordGuide.build(self.tagger, decode(self.tokenizer, src_ids), src_ids,
                                self.table, sample.chord_guide)

    def _window(self, window: np.ndarray, prefix: list[int], given: int, task: int,
                limits: tuple[int, int], sample: SampleConfig, w: int, first: int = 0,
                guide: ChordGuide | None = None) -> list[list[int]]:
        """The new bars (after the ``given`` bars of ``prefix``) of window ``w``, bar by bar;
        ``task`` opens the decoder, ``limits`` are the (source, output) token budgets; the
        window starts at source bar ``first``; ``guide`` steers pitches and the choice."""
        max_src, max_tgt = limits
        sigs = self._timesigs(window.tolist())  # before the cut: keeps bars aligned
        window = window[:max_src]
        x = torch.as_tensor(window, dtype=torch.long)[None]
        pos, bar = position_ids(x, self.table, self.model.cfg.n_pos)
        enc = self.model.encode(x, pos, bar)
        # After given bars the next bar is opened here: no candidate adds notes to them.
        given_ids = [*prefix, self.table.id("Bar_None"), sigs[given]] if given else []
        k = sample.candidates
        grammars = [Grammar(self.table, max_bars=len(sigs), exact=True, timesigs=sigs)
                    for _ in range(k)]
        for g in grammars:
            for tok in [task, *given_ids]:
                g.consume(tok)
        source = SourceNotes(window.tolist(), self.table) if self.model.cfg.align else None
        # Seeds distinct per window and row; with one candidate, seed + window as always.
        seeds = [(sample.seed + w) * k + j for j in range(k)]
        bias = None if guide is None else lambda g: guide.bias(g, first)
        cands = generate_many(self.model, self.table, [task, *given_ids], grammars, seeds,
                              sample, max(1, max_tgt - len(given_ids)), enc=enc, source=source,
                              bias=bias)
        cands = [given_ids[len(prefix):] + c for c in cands]
        new_src = bar_slice(window, bar_starts(window, self.table), given, len(sigs))
        judge = None
        if guide is not None and sample.chord_judge:
            judge = (guide, guide.bar_ticks[first + given],
                     guide.bar_ticks[min(first + len(sigs), len(guide.bar_len))],
                     sample.chord_judge)
        kept = np.asarray(cands[self._consensus(new_src.tolist(), cands, sample.consonance,
                                                judge)])
        cuts = bar_starts(kept, self.table).tolist()
        out = [kept[i:j].tolist() for i, j in zip(cuts, [*cuts[1:], len(kept)], strict=True)]
        # The grammar promises every bar; should a row ever run out of steps first, empty bars
        # keep the output aligned with the source (the next window's context reads it by bar).
        bar_id = self.table.id("Bar_None")
        return out + [[bar_id, sig] for sig in sigs[given + len(out):]]

    def _consensus(self, src: list[int], candidates: list[list[int]], consonance: float,
                   judge: tuple[ChordGuide, int, int, float] | None = None) -> int:
        """Index of the candidate window :func:`symbolic.consensus.choose` keeps; ``judge``:
        (guide, start and end tick of the new bars, weight) adds the tagger's expected
        Jaccard."""
        if len(candidates) == 1:
            return 0
        src_score = decode(self.tokenizer, src)
        src_notes, beat = all_notes(src_score), src_score.ticks_per_quarter
        notes = [all_notes(decode(self.tokenizer, c)) for c in candidates]
        # Every beat anything sounds on: a source cut at max_src still has its later bars judged.
        end = max([n.end for n in src_notes] + [n.end for c in notes for n in c] + [1])
        sets = [beat_pitch_classes(c, 0, end, beat) for c in notes]
        extra = None
        if judge is not None:
            guide, start, stop, weight = judge
            extra = [weight * guide.judge(c, start, stop) for c in notes]
        return choose(sets, beat_pitch_classes(src_notes, 0, end, beat), consonance, extra)

    @torch.no_grad()
    def harmonize(self, score: symusic.Score, track: int | None = None,
                  sample: SampleConfig | None = None) -> symusic.Score:
        """Melody (given track, or all notes) + generated lower voices, as two tracks."""
        mel_ids = self.tokens(select_track(score, track, "melody"))
        har = self.seq2seq_tokens(mel_ids, True, sample or SampleConfig())
        return stack(decode(self.tokenizer, mel_ids, "melody"),
                     decode(self.tokenizer, har, "harmony"))

    @torch.no_grad()
    def melody(self, score: symusic.Score, track: int | None = None,
               sample: SampleConfig | None = None) -> symusic.Score:
        """Generated melody over the chords (given track, or all notes), as two tracks."""
        har_ids = self.tokens(select_track(score, track, "chords"))
        mel = self.seq2seq_tokens(har_ids, False, sample or SampleConfig())
        return stack(decode(self.tokenizer, mel, "melody"),
                     decode(self.tokenizer, har_ids, "chords"))

    def remix(self, score: symusic.Score, keep: str,
              sample: SampleConfig | None = None) -> symusic.Score:
        """Keeps the rhythm (re-writes pitches) or the pitches (re-writes durations)."""
        if keep not in ("rhythm", "pitch"):
            raise UserError(f"--keep must be 'rhythm' or 'pitch', got {keep!r}")
        ids = self.tokens(score)
        kind = K_PITCH if keep == "rhythm" else K_DUR
        new = fill(self.model, self.table, ids, kind, sample or SampleConfig())
        return decode(self.tokenizer, new, name=f"remix-keep-{keep}")

