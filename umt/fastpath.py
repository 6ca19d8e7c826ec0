"""TorchScript fast path for generation: one conditioning frame of steps in a scripted loop.

Eager streaming (:meth:`umt.nn.stream.Stream.step`) pays Python's interpreter for each of the
~6 ops per layer and step; at small batches that overhead, not arithmetic, is the time. Here
the same function, :func:`umt.nn.stream.step_logits`, and the sampling run in a TorchScript
loop over all the steps of one conditioning frame, so results equal the eager path's
(tests/test_fastpath.py checks it). If scripting
fails (an unusual build, a platform without TorchScript) generation falls back to eager.
"""

import logging
import warnings
from typing import Optional

import torch

from umt.nn.stream import StepArgs, Stream, step_logits
from umt.sampling import sample

log = logging.getLogger(__name__)


def _frame_loop(
    prev: torch.Tensor,
    noise: torch.Tensor,
    out: torch.Tensor,
    temperature: float,
    t0: int,
    args: StepArgs,
    inject: list[torch.Tensor],
) -> torch.Tensor:
    # No ``from __future__ import annotations`` in this module: TorchScript reads these types.
    for s in range(noise.shape[0]):
        extra: Optional[torch.Tensor] = None  # noqa: UP045 - TorchScript
        if len(inject) > 0:
            extra = inject[0][s]
        logits = step_logits(prev, t0 + s, args, extra)
        prev = sample(logits, noise[s], temperature)
        out[s] = prev
    return prev


_scripted = None
# TorchScript's profiling executor instruments every op of a function's first run (in each
# thread that calls it); a first run over a whole frame (800 steps of the shipped model) took
# 0.6-1.1 s instead of 0.2 s. So a stream's first frame starts with this many single steps,
# which pay that cost for one step each.
PROFILED_STEPS = 2


def scripted_loop():
    """The scripted :func:`_frame_loop`, or None where TorchScript cannot compile it."""
    global _scripted
    if _scripted is None:
        try:
            with warnings.catch_warnings():
                # Deprecated in favour of torch.compile, which took 93 s to compile a decoder's
                # step on our 2-core VM; scripting this loop takes 0.02 s.
                warnings.simplefilter("ignore", DeprecationWarning)
                _scripted = torch.jit.script(_frame_loop)
        except Exception as err:  # noqa: BLE001 - any failure means: use the eager path
            log.warning("TorchScript unavailable (%s); generating in eager mode", err)
            _scripted = False
    return _scripted or None


def run_frame(
    st: Stream,
    prev: torch.Tensor,
    noise: torch.Tensor,
    out: torch.Tensor,
    temperature: float,
    fast: bool = True,
) -> torch.Tensor:
    """Generate ``noise.shape[0]`` steps of one stream after its ``set_condition``
    (its per-sample rows, if any, hold at least that many steps).

    Args:
        st: Its streaming buffers (:class:`~umt.nn.stream.Stream`), one per concurrent thread.
        prev: (B,) int64 class of the previous sample.
        noise: (S, B) uniforms, one row per step.
        out: (S, B) int64, receives the sampled classes.
        temperature: Softmax temperature (0 = greedy).
        fast: Run the scripted loop where TorchScript compiles it, else the same loop in Python.

    Returns:
        (B,) the last sampled classes.
    """
    st.require_condition()
    loop = (scripted_loop() if fast else None) or _frame_loop
    inject = st.inject
    if loop is not _frame_loop and st.t == 0 and noise.shape[0] > PROFILED_STEPS:
        for s in range(PROFILED_STEPS):
            rows = [x[s : s + 1] for x in inject]
            prev = loop(prev, noise[s : s + 1], out[s : s + 1], temperature, s, st.args, rows)
        st.t = PROFILED_STEPS
        noise, out = noise[PROFILED_STEPS:], out[PROFILED_STEPS:]
        inject = [x[PROFILED_STEPS:] for x in inject]
    prev = loop(prev, noise, out, temperature, st.t, st.args, inject)
    st.t += noise.shape[0]
    return prev
