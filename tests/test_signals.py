"""Ctrl-C and SIGTERM stop training cleanly: one line, exit 130/143, a checkpoint to resume from."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch
from signal_helpers import run, signal_when

from plumbing.signals import Interrupted, stop_on_signals


def test_stop_on_signals_records_the_first_signal_and_restores_the_handlers():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with stop_on_signals() as stop:
        assert stop.signum is None
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the next bytecode: no death
        assert stop.signum == signal.SIGTERM and stop.name == "SIGTERM"
        # a second signal is not caught: the usual behaviour is back at once
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_signal_stays_ignored():
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a script
    try:
        with stop_on_signals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.signum is None
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def test_interrupted_exits_with_the_shell_status_and_says_how_to_go_on():
    stop = Interrupted.saved(signal.SIGTERM, 1234, "RUN/checkpoints/last.pt")
    assert stop.exit_code == 143
    assert str(stop) == ("interrupted at step 1234 (SIGTERM): checkpoint saved to "
                         "RUN/checkpoints/last.pt; rerun the same command to resume")


def _train(toy_root, tmp_path, max_steps: int) -> list[str]:
    # checkpoint_every is out of reach: only the signal handler can have saved a checkpoint
    return [sys.executable, "-m", "umt.train", "model=tiny", f"data.root={toy_root}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.segment=1600",
            "data.batch_per_domain=1", "trainer=smoke", f"trainer.max_steps={max_steps}",
            "trainer.checkpoint_every=1000000", "trainer.val_every=2", "trainer.progress=false",
            f"hydra.run.dir={tmp_path / 'run'}"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_a_checkpoint_and_the_rerun_resumes_there(signum, toy_root, tmp_path):
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    # "step 4 " is the validation line after 4 steps: training is under way
    stopped = signal_when(_train(toy_root, tmp_path, 1_000_000), signum, "step 4 ",
                          tmp_path / "logs")
    assert stopped.returncode == 128 + signum
    assert "Traceback" not in stopped.stderr
    line = stopped.stop_line()
    step = int(line.group(1))
    assert line.group(2) == signal.Signals(signum).name and line.group(3) == str(ckpt)
    assert step >= 4
    assert torch.load(ckpt, weights_only=True)["step"] == step
    assert [p.name for p in ckpt.parent.iterdir()] == ["last.pt"]  # no temp file left

    again = run(_train(toy_root, tmp_path, step + 1))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {ckpt} at step {step}" in again.stdout + again.stderr
    assert torch.load(ckpt, weights_only=True)["step"] == step + 1
