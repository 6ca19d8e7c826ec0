"""Two-process DDP training on CPU (gloo): the same command as one process, under torchrun."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _ranks_output(logs: Path) -> str:
    """The end of every rank's own output (torchrun's failure report cuts it off)."""
    return "\n".join(f"--- {p.relative_to(logs)}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted(logs.rglob("*.log")))


@pytest.mark.slow
def test_torchrun_two_processes_trains_and_resumes(toy_root, tmp_path):
    run = tmp_path / "run"
    logs = tmp_path / "logs"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            f"--log-dir={logs}", "--tee=3", "-m", "umt.train", "model=tiny",
            f"data.root={toy_root}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.segment=1600",
            "data.batch_per_domain=1", "trainer=smoke", "trainer.progress=false",
            f"hydra.run.dir={run}"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run(base + ["trainer.max_steps=2"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:] + _ranks_output(logs)
    ckpt = torch.load(run / "checkpoints/last.pt", weights_only=True)
    assert ckpt["step"] == 2
    assert not any(k.startswith("module.") for k in ckpt["encoder"])  # DDP unwrapped on save
    again = subprocess.run(base + ["trainer.max_steps=3"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:] + _ranks_output(logs)
    assert "resumed from" in again.stdout + again.stderr
    assert torch.load(run / "checkpoints/last.pt", weights_only=True)["step"] == 3
