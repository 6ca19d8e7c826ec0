"""Stop a training loop cleanly on Ctrl-C (SIGINT) or a cluster's preemption (SIGTERM).

While :func:`stop_on_signals` is active the first SIGINT or SIGTERM only records itself; the loop
polls :attr:`StopRequest.signum` between steps, saves a checkpoint and raises :class:`Interrupted`,
which the CLI prints as one line and turns into the shell's exit status (128 + signal number).
A second signal is not caught: it acts as usual (KeyboardInterrupt, or the kill), for a user who
does not want to wait for the save.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):  # noqa: N818 (a clean, saved stop, not an error)
    """A run stopped by a signal after saving its state; ``exit_code`` is 128 + the signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum

    @classmethod
    def saved(cls, signum: int, step: int, path: str | Path) -> Interrupted:
        """The stop of a run whose state at ``step`` was saved to ``path``: the one line."""
        return cls(signum, f"interrupted at step {step} ({signal_name(signum)}): checkpoint "
                           f"saved to {path}; rerun the same command to resume")


class StopRequest:
    """The signal received while :func:`stop_on_signals` is active (``None`` while none is)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        """``SIGINT`` / ``SIGTERM`` (empty while no signal came)."""
        return signal_name(self.signum) if self.signum else ""


def signal_name(signum: int) -> str:
    """The usual name of a signal number, e.g. ``SIGTERM``."""
    return signal.Signals(signum).name


@contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopRequest]:
    """Record the first of ``signals`` instead of dying; restore the old handlers on exit.

    A signal the parent set to be ignored (a background job of a script ignores SIGINT) stays
    ignored. Outside the main thread Python cannot install handlers, so the request then never
    fires (the signals keep their usual effect).
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.getsignal(s) for s in signals}
    previous = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def handler(signum: int, frame: FrameType | None) -> None:
        request.signum = signum
        restore()  # a second signal acts as usual: the user can still force the stop

    for s in previous:
        signal.signal(s, handler)
    try:
        yield request
    finally:
        restore()
