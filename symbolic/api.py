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
from symbolic.metrics import all_notes, beat_pitch_classes
from symbolic.midi_io import UserError, read_midi, select_track, write_midi
from symbolic.model import MusicTransformer
from symbolic.sample import SampleConfig, fill, generate, generate_many
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


def stack(first: symusic.Score, *others: symusic.Score) -> symusic.Score:
    """Puts the tracks of several decoded scores (same resolution) into one score."""
    out = first.copy()
    for s in others:
        for t in s.tracks:
            out.tracks.append(t)
    return out


class Composer:
    """A loaded model plus its tokenizer, ready to continue, harmonise, write melodies, remix."""

    def __init__(self, model: MusicTransformer, meta: dict | None = None):
        self.model = model.eval()
        self.tokenizer = build_tokenizer()
        self.table = token_table(self.tokenizer)
        meta = meta or {}
        self.window_bars = int(meta.get("window_bars", 4))
        self.max_src = int(meta.get("max_src_len", 160))
        self.max_tgt = int(meta.get("max_tgt_len", 384))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Composer:
        """Loads an export (default: the shipped chorale model)."""
        path = Path(path) if path else DEFAULT_MODEL
        blob = read_export(path)  # read once: the weights and the metadata
        return cls(model_from_export(blob), blob.get("meta", {}))

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

        Each window's output holds exactly the source window's bars, in the same meters.
        """
        src = np.asarray(src_ids)
        starts = bar_starts(src, self.table)
        task = self.table.id("ToHarmony_None" if to_harmony else "ToMelody_None")
        max_src, max_tgt = (self.max_src, self.max_tgt) if to_harmony else (self.max_tgt,
                                                                            self.max_src)
        out: list[int] = []
        for w, a in enumerate(range(0, len(starts), self.window_bars)):
            window = bar_slice(src, starts, a, a + self.window_bars)
            sigs = self._timesigs(window.tolist())  # before the cut: keeps bars aligned
            window = window[:max_src]
            x = torch.as_tensor(window, dtype=torch.long)[None]
            pos, bar = position_ids(x, self.table, self.model.cfg.n_pos)
            enc = self.model.encode(x, pos, bar)
            k = sample.candidates
            grammars = [Grammar(self.table, max_bars=len(sigs), exact=True, timesigs=sigs)
                        for _ in range(k)]
            for g in grammars:
                g.consume(task)
            source = SourceNotes(window.tolist(), self.table) if self.model.cfg.align else None
            # Seeds distinct per window and row; with one candidate, seed + window as always.
            seeds = [(sample.seed + w) * k + j for j in range(k)]
            cands = generate_many(self.model, self.table, [task], grammars, seeds, sample,
                                  max_tgt, enc=enc, source=source)
            out += cands[self._consensus(window.tolist(), cands, sample.consonance)]
        return out

    def _consensus(self, src: list[int], candidates: list[list[int]], consonance: float) -> int:
        """Index of the candidate window :func:`symbolic.consensus.choose` keeps."""
        if len(candidates) == 1:
            return 0
        src_score = decode(self.tokenizer, src)
        src_notes, beat = all_notes(src_score), src_score.ticks_per_quarter
        notes = [all_notes(decode(self.tokenizer, c)) for c in candidates]
        # Every beat anything sounds on: a source cut at max_src still has its later bars judged.
        end = max([n.end for n in src_notes] + [n.end for c in notes for n in c] + [1])
        sets = [beat_pitch_classes(c, 0, end, beat) for c in notes]
        return choose(sets, beat_pitch_classes(src_notes, 0, end, beat), consonance)

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

