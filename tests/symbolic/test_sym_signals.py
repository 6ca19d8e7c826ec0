"""SIGTERM stops symbolic training cleanly: one line, exit 143, a state the rerun resumes from."""

from __future__ import annotations

import signal
import sys

import torch
from signal_helpers import run, signal_when


def test_sigterm_saves_the_state_and_the_rerun_resumes_there(cache_dir, tiny_overrides,
                                                             tmp_path):
    run_dir = tmp_path / "run"
    state = run_dir / "last.pt"

    def train(steps: int) -> list[str]:
        # ckpt_every is out of reach: only the signal handler can have saved the state
        overrides = [o for o in tiny_overrides(cache_dir, run_dir, steps)
                     if not o.startswith("trainer.ckpt_every=")]
        return [sys.executable, "-m", "symbolic", "train", *overrides,
                "trainer.ckpt_every=1000000"]

    stopped = signal_when(train(1_000_000), signal.SIGTERM, "step 3 ", tmp_path / "logs")
    assert stopped.returncode == 143
    assert "Traceback" not in stopped.stderr
    line = stopped.stop_line()
    step = int(line.group(1))
    assert line.group(2) == "SIGTERM" and line.group(3) == str(state) and step >= 3
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == step and saved["format"] == "symbolic-train-1"
    assert not (run_dir / "export.pt").exists()  # stopped, not finished
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt"]  # no temp file left

    again = run(train(step + 1))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {state} at step {step}" in again.stdout
    assert torch.load(state, weights_only=True)["step"] == step + 1
    assert (run_dir / "export.pt").exists()
