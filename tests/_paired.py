"""A tiny paired dataset built once per test session (shared by the data and eval tests)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from evaluation.timbre import TimbreConfig

INSTRUMENTS = "piano,violin,flute"
# Small but real: 4 chorales cut to 8 s, whole texture + soprano line, on three instruments.
TIMBRE = TimbreConfig(steps=100)


def require_fluidsynth() -> None:
    """Skip when fluidsynth or TimGM6mb is missing; in CI (``$CI`` set) they must be there."""
    missing = [what for what, ok in (
        ("fluidsynth (apt-get install fluidsynth)", shutil.which("fluidsynth")),
        ("TimGM6mb (apt-get install timgm6mb-soundfont)",
         Path("/usr/share/sounds/sf2/TimGM6mb.sf2").is_file()),
    ) if not ok]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")


@functools.cache
def tiny_dataset() -> Path:
    """Build (once per process) and return the tiny dataset's folder; its cache sits beside it."""
    from data.instruments import parse_instruments, resolve_soundfonts
    from data.synth import BuildConfig, build_dataset

    root = Path(tempfile.mkdtemp(prefix="umt-paired-"))
    atexit.register(shutil.rmtree, root, True)
    cfg = BuildConfig(out=root / "data", instruments=parse_instruments(INSTRUMENTS),
                      soundfonts=resolve_soundfonts("timgm6mb"), sources=["bach"],
                      hours=0.016, seed=0, voices="soprano", max_seconds=8.0, jobs=2,
                      cache=root / "midi-cache")
    build_dataset(cfg)
    return root / "data"


@pytest.fixture
def paired() -> Path:
    """The tiny dataset folder (skips without fluidsynth outside CI)."""
    require_fluidsynth()
    return tiny_dataset()
