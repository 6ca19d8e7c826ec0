"""The benchmark scripts run and print the rows the issue asks for (slow: they time real work)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _json_rows(*argv: str) -> list[dict]:
    run = subprocess.run([sys.executable, *argv, "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=True)
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_generate_benchmark_rows():
    rows = _json_rows("bench/generate.py", "--configs", "tiny", "frame", "--quick")
    frame, rows = rows[-2:], rows[:-2]
    assert [r["mode"] for r in rows] == ["naive", "cached", "cached+script",
                                         "cached+script+sample", "chunk-batched",
                                         "chunk-batched+script", "chunk-batched+script+sample"]
    assert [(r["mode"], r["batch"]) for r in frame] == [("frame", 1), ("frame-batched", 16)]
    assert all(r["samples_per_s"] > 0 for r in frame)
    for r in rows:
        assert {"config", "device", "batch", "samples_per_s", "realtime_factor", "gflops",
                "peak_gflops", "peak_gflops_bf16"} <= r.keys()
        assert r["samples_per_s"] > 0 and r["peak_gflops"] > 0
        assert r["samples_per_s_best"] >= r["samples_per_s"]
    # Cached generation must beat recomputing the receptive field for every sample.
    assert rows[2]["vs_naive"] > 1


@pytest.mark.slow
def test_translate_benchmark_rows():
    rows = _json_rows("bench/translate.py", "--seconds", "1", "--repeats", "1")
    assert [r["mode"] for r in rows] == ["chunked+script", "chunked (eager)", "unchunked+script"]
    assert rows[0]["chunks"] > 1 and rows[2]["chunks"] == 1
    assert all(r["decode_s"] > 0 and r["realtime_factor"] > 0 for r in rows)


@pytest.mark.slow
def test_memory_benchmark_rows():
    rows = _json_rows("bench/memory.py", "--minutes", "0.05", "0.1")
    assert [r["minutes"] for r in rows] == [0.05, 0.1]
    assert all(r["peak_rss_mb"] > 100 and r["wall_s"] > 0 for r in rows)
