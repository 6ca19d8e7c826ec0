"""Run a real training subprocess, signal it once it is training, and read what it left."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LINE = re.compile(r"interrupted at step (\d+) \((SIG\w+)\): checkpoint saved to (\S+); "
                  r"rerun the same command to resume")


@dataclass
class Stopped:
    """What a signalled run left: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str

    def stop_line(self) -> re.Match:
        """The one ``interrupted at step ...`` line, which must also be stderr's last line."""
        lines = self.stderr.strip().splitlines()
        hits = [m for m in map(LINE.fullmatch, lines) if m]
        assert len(hits) == 1, self.stderr[-3000:]
        assert lines[-1] == hits[0].group(0), self.stderr[-3000:]
        return hits[0]


def signal_when(cmd: list[str], signum: int, ready: str, logs: Path,
                timeout: float = 180) -> Stopped:
    """Start ``cmd``, send ``signum`` once ``ready`` shows in its stdout, wait for the exit.

    Output goes to files (not pipes) so the poll can read it while the run goes on.
    """
    logs.mkdir(parents=True, exist_ok=True)
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=fo, stderr=fe)
        try:
            deadline = time.monotonic() + timeout
            while ready not in out.read_text():
                assert proc.poll() is None, f"ended before the signal:\n{err.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "never became ready"
                time.sleep(0.1)
            proc.send_signal(signum)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return Stopped(proc.returncode, out.read_text(), err.read_text())


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` to the end in the repository root, capturing text output."""
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
