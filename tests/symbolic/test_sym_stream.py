"""Training batches from worker processes, bf16 autocast steps, and the time-sized schedule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from plumbing.device import training_autocast
from plumbing.errors import UserError
from symbolic.config import DataConfig, ModelConfig, TrainConfig
from symbolic.data import TaskBatcher, load_pieces
from symbolic.stream import TASKS, batch_stream, task_batch
from symbolic.train import build_model, lr_at, train_step


@pytest.fixture(scope="module")
def pieces(cache_dir, tokenizer):
    splits = load_pieces(DataConfig(cache_dir=str(cache_dir), limit=4), tokenizer)
    return [p for split in splits.values() for p in split]


def _batcher(pieces, table, seed=0) -> TaskBatcher:
    return TaskBatcher(pieces, table, DataConfig(transpose=3), 32, 65, augment=True, seed=seed)


def test_in_loop_stream_draws_as_the_batcher_does(pieces, table):
    cpu = torch.device("cpu")
    stream = batch_stream(_batcher(pieces, table), TASKS, 2, 32, cpu, 0, 0, 0)
    ref = _batcher(pieces, table)
    for got in itertools.islice(stream, 2):
        want = {t: task_batch(ref, t, 2, 32) for t in TASKS}
        for t in TASKS:
            assert got[t].keys() == want[t].keys()
            for k in want[t]:
                torch.testing.assert_close(got[t][k], want[t][k])


def _first_ids(stream, n: int) -> list[torch.Tensor]:
    return [b["lm"]["ids"] for b in itertools.islice(stream, n)]


def test_worker_streams_are_complete_distinct_and_reseeded_on_resume(pieces, table):
    cpu = torch.device("cpu")
    steps = list(itertools.islice(batch_stream(_batcher(pieces, table), TASKS, 2, 32, cpu, 2,
                                               0, 0), 4))
    for b in steps:
        assert set(b) == set(TASKS)
        assert b["mel2harm"]["src"].shape[0] == 2 and b["mlm"]["pad"].dtype == torch.bool
        assert b["mel2harm"]["align"].shape == b["mel2harm"]["ids"].shape
    # the two workers take turns and draw differently
    assert not torch.equal(steps[0]["lm"]["ids"], steps[1]["lm"]["ids"])
    again = _first_ids(batch_stream(_batcher(pieces, table), TASKS, 2, 32, cpu, 2, 0, 0), 2)
    resumed = _first_ids(batch_stream(_batcher(pieces, table), TASKS, 2, 32, cpu, 2, 0, 100), 2)
    assert all(torch.equal(a, s["lm"]["ids"]) for a, s in zip(again, steps, strict=False))
    assert not torch.equal(resumed[0], again[0])  # a resumed run draws fresh batches


def test_unknown_task_is_one_line_before_any_worker(pieces, table):
    stream = batch_stream(_batcher(pieces, table), ["lm", "mlmm"], 2, 32, torch.device("cpu"),
                          2, 0, 0)
    with pytest.raises(UserError, match="unknown task 'mlmm'"):
        next(stream)


def test_bf16_step_trains_float32_weights(pieces, table):
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_heads=2, enc_layers=1, dec_layers=1, d_ff=64,
                                    seg_len=32, mem_len=32, attention="txl", bar_attention=True,
                                    align=True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batcher = _batcher(pieces, table)
    batches = {t: task_batch(batcher, t, 2, 32) for t in TASKS}
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_step(model, opt, batches, 1.0, "bf16")
    assert all(np.isfinite(v) for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    with pytest.raises(UserError, match="trainer.precision must be auto, bf16 or fp32"):
        training_autocast(torch.device("cpu"), "fp16")
    with training_autocast(torch.device("cpu"), "auto"):  # auto is float32 on the CPU
        assert not torch.is_autocast_enabled("cpu")


def test_time_schedule_decays_over_the_minutes():
    cfg = TrainConfig()
    t = cfg.trainer
    t.lr, t.warmup, t.steps, t.max_minutes, t.time_schedule = 1.0, 10, 10**6, 8.0, True
    assert lr_at(5, cfg, 0.0) == pytest.approx(0.6)  # warm-up still counts steps
    assert lr_at(50, cfg, 0.0) == pytest.approx(1.0)
    assert lr_at(50, cfg, 4.0) == pytest.approx(0.55)  # half the time: half way down the cosine
    assert lr_at(50, cfg, 8.0) == pytest.approx(0.1) == lr_at(50, cfg, 9.0)
    t.time_schedule = False
    assert lr_at(50, cfg, 8.0) == pytest.approx(1.0, abs=1e-6)  # by steps: barely begun
    t.time_schedule, t.max_minutes = True, 0.0
    with pytest.raises(UserError, match="time_schedule needs trainer.max_minutes"):
        lr_at(50, cfg, 1.0)
