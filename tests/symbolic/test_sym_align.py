"""Aligned seq2seq input: the source note at each target token's time, in training and sampling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from plumbing.errors import UserError
from symbolic.align import SourceNotes, align_index, time_keys
from symbolic.checkpoint import export, load_export
from symbolic.config import ModelConfig
from symbolic.grammar import Grammar
from symbolic.model import MusicTransformer
from symbolic.tokens import encode, position_ids
from symbolic.train import build_model, init_weights


def _ids(table, names: list[str]) -> torch.Tensor:
    return torch.tensor([[table.id(n) for n in names]])


def _note(pos: int, pitch: int) -> list[str]:
    return [f"Position_{pos}", f"Pitch_{pitch}", "Velocity_95", "Duration_1.0.8"]


MELODY = ["Bar_None", "TimeSig_4/4", *_note(0, 72), *_note(16, 74),
          "Bar_None", "TimeSig_4/4", *_note(8, 76)]
# Index of each melody Pitch token above: 3 (72), 7 (74), 13 (76).


def test_each_target_token_gets_the_last_melody_onset_at_or_before_its_time(table):
    src = _ids(table, MELODY)
    tgt = _ids(table, ["ToHarmony_None", "Bar_None", "TimeSig_4/4", *_note(0, 60), *_note(8, 62),
                       *_note(16, 64), "Bar_None", "TimeSig_4/4", *_note(0, 65), *_note(8, 67)])
    want = ([-1, -1, -1] + [3] * 4 + [3] * 4 + [7] * 4 + [7, 7] + [7] * 4 + [13] * 4)
    assert align_index(src, tgt, table)[0].tolist() == want


def test_time_keys_never_decrease_and_right_padding_keeps_the_last_note(table, tokenizer,
                                                                        chorale):
    ids = torch.tensor([encode(tokenizer, chorale)[:200]])
    keys = time_keys(ids, table)[0]
    assert torch.all(keys[1:] >= keys[:-1]) and keys[-1] > keys[0]
    pad = table.id("PAD_None")
    src = torch.cat([_ids(table, MELODY), torch.full((1, 5), pad)], dim=1)
    late = _ids(table, ["Bar_None", "Bar_None", "Bar_None", *_note(0, 60)])
    assert align_index(src, late, table)[0].tolist() == [-1, 7, 13, 13, 13, 13, 13]


def test_seq2seq_batches_carry_the_alignment_of_each_row(table, tokenizer, chorale_paths):
    import symusic

    from symbolic.config import DataConfig
    from symbolic.data import Piece, TaskBatcher
    from symbolic.tokens import merge_tracks

    pieces = []
    for path in chorale_paths[:3]:
        score = symusic.Score(str(path))
        mel, low = (merge_tracks(score, t) for t in ([0], list(range(1, len(score.tracks)))))
        pieces.append(Piece(path.stem, *(torch.tensor(encode(tokenizer, x)).numpy()
                                         for x in (score, mel, low))))
    b = TaskBatcher(pieces, table, DataConfig(), 64, 32, augment=False).seq2seq(4, True)
    pad = table.id("PAD_None")
    for src, ids, al in zip(b["src"], b["ids"], b["align"], strict=True):
        n, m = int((src != pad).sum()), int((ids != pad).sum())
        want = align_index(src[None, :n], ids[None, :m], table)[0]
        assert torch.equal(al[:m], want) and al[:m].max() > 0


def test_sampling_alignment_equals_the_training_alignment(table, tokenizer, chorale):
    """SourceNotes (grammar state, token by token) == align_index over the whole target."""
    ids = encode(tokenizer, chorale)
    src, tgt = ids[:150], [table.id("ToHarmony_None"), *ids[:300]]
    want = align_index(torch.tensor([src]), torch.tensor([tgt]), table)[0].tolist()
    notes, g = SourceNotes(src, table), Grammar(table)
    streamed = []
    for tok in tgt:
        g.consume(tok)
        streamed.append(notes.index(g))
    assert streamed == want
    assert notes.indices(tgt) == want
    assert max(want) > 100  # the target runs past many source notes


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[MusicTransformer, MusicTransformer]:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=2, d_ff=64, dropout=0.0,
                      seg_len=16, mem_len=64, max_rel=32, attention="txl")
    plain = build_model(cfg).eval()
    aligned = MusicTransformer(dataclasses.replace(plain.cfg, align=True)).eval()
    init_weights(aligned, _save(plain, tmp_path_factory.mktemp("plain") / "plain.pt"))
    return plain, aligned


def _save(model: MusicTransformer, path: Path) -> str:
    export(model, path, {})
    return str(path)


def _inputs(table, tokenizer, chorale, n_src: int, n_tgt: int, n_pos: int):
    ids = encode(tokenizer, chorale)
    src = torch.tensor([ids[:n_src]])
    tgt = torch.tensor([[table.id("ToHarmony_None"), *ids[:n_tgt - 1]]])
    return src, *position_ids(src, table, n_pos), tgt, *position_ids(tgt, table, n_pos)


def test_aligned_model_starts_as_the_model_it_was_initialised_from(pair, table, tokenizer,
                                                                   chorale, tmp_path):
    plain, aligned = pair
    plain = load_export(_save(plain, tmp_path / "plain.pt"))  # the fp16 weights aligned got
    src, sp, sb, tgt, tp, tb = _inputs(table, tokenizer, chorale, 40, 30, plain.cfg.n_pos)
    al = align_index(src, tgt, table)
    a, _ = aligned.decode(tgt, tp, tb, enc=aligned.encode(src, sp, sb), align=al)
    b, _ = plain.decode(tgt, tp, tb, enc=plain.encode(src, sp, sb))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="needs align"):
        aligned.decode(tgt, tp, tb, enc=aligned.encode(src, sp, sb))


def test_aligned_streaming_equals_teacher_forcing_and_uses_the_alignment(pair, table, tokenizer,
                                                                        chorale):
    _, aligned = pair
    model = MusicTransformer(aligned.cfg).eval()
    model.load_state_dict(aligned.state_dict())
    torch.nn.init.normal_(model.align_proj.weight, std=0.5)  # as if trained: not a no-op
    src, sp, sb, tgt, tp, tb = _inputs(table, tokenizer, chorale, 40, 30, model.cfg.n_pos)
    enc, al = model.encode(src, sp, sb), align_index(src, tgt, table)
    full, _ = model.decode(tgt, tp, tb, enc=enc, align=al)
    shifted, _ = model.decode(tgt, tp, tb, enc=enc, align=(al - 1).clamp(min=-1))
    assert not torch.allclose(full, shifted, atol=1e-4)
    notes, g, mem, steps = SourceNotes(src[0].tolist(), table), Grammar(table), None, []
    for tok in tgt[0].tolist():
        g.consume(tok)
        p, b = g.embed_ids(model.cfg.n_pos)
        one = [torch.tensor([[v]]) for v in (tok, p, b)]
        h, mem = model.decode(*one, mem, enc, align=torch.tensor([[notes.index(g)]]))
        steps.append(h)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_init_from_refuses_weights_of_another_model(pair, tmp_path):
    plain, aligned = pair
    bigger = build_model(dataclasses.replace(plain.cfg, d_model=48, align=True))
    with pytest.raises(UserError, match="another model size"):
        init_weights(bigger, _save(plain, tmp_path / "plain.pt"))
    fresh_plain = MusicTransformer(plain.cfg)
    with pytest.raises(UserError, match="0 missing, 2 unexpected"):
        init_weights(fresh_plain, _save(aligned, tmp_path / "aligned.pt"))
    with pytest.raises(UserError, match="no such"):
        init_weights(bigger, "/nonexistent/last.pt")


def test_a_run_with_init_from_starts_from_those_weights(cache_dir, tiny_export, tiny_overrides,
                                                        chorale, tmp_path):
    from symbolic.checkpoint import load_state, read_export
    from symbolic.train import compose_config, train

    state = tiny_export.parent / "last.pt"
    cfg = compose_config([*tiny_overrides(cache_dir, tmp_path / "ft", 0), "model.align=true",
                          f"trainer.init_from={state}"])
    blob = read_export(train(cfg))  # 0 steps: the export is the initial model
    start = load_state(state)["model"]
    assert blob["meta"]["init_from"] == str(state)
    assert torch.count_nonzero(blob["model"]["align_proj.weight"]) == 0
    for k, v in start.items():
        torch.testing.assert_close(blob["model"][k].float(), v.half().float())
    from symbolic.api import Composer

    composer = Composer.load(tmp_path / "ft" / "export.pt")  # an aligned model harmonises
    out = composer.harmonize(chorale, track=0)
    assert len(out.tracks) == 2 and out.tracks[1].notes


def test_sampling_with_alignment_reads_the_same_with_and_without_memory(pair, table, tokenizer,
                                                                        chorale):
    """generate(source=...) with cached keys/values == re-reading the context every step."""
    from symbolic.sample import SampleConfig, generate

    _, aligned = pair
    model = MusicTransformer(dataclasses.replace(aligned.cfg, mem_len=512)).eval()
    model.load_state_dict(aligned.state_dict())
    torch.nn.init.normal_(model.align_proj.weight, std=0.5)
    src = encode(tokenizer, chorale)[:60]
    x = torch.tensor([src])
    enc = model.encode(x, *position_ids(x, table, model.cfg.n_pos))
    task = table.id("ToHarmony_None")
    outs = []
    for use_memory in (True, False):
        g = Grammar(table, max_bars=2, exact=True)
        g.consume(task)
        outs.append(generate(model, table, [task], g, SampleConfig(seed=5), max_new=80, enc=enc,
                             use_memory=use_memory, source=SourceNotes(src, table)))
    assert outs[0] == outs[1] and len(outs[0]) > 10
    g = Grammar(table, max_bars=2, exact=True)
    g.consume(task)
    blind = generate(model, table, [task], g, SampleConfig(seed=5), max_new=80, enc=enc,
                     source=SourceNotes([table.id("Bar_None")] * 4, table))
    assert blind != outs[0]  # the source notes steer the sample
