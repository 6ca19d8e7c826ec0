"""TorchScript fast path for generation: one latent frame of steps in a scripted loop.

Eager streaming (:meth:`umt.nn.wavenet.Decoder.step`) pays Python's interpreter for each of the
~8 ops per layer and step; at small batches that overhead, not arithmetic, is the time. Here
the same ops on the same buffers run in a TorchScript loop over all the steps of one latent
frame, so results equal the eager path's (tests/test_fastpath.py checks it). If scripting
fails (an unusual build, a platform without TorchScript) generation falls back to eager.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F

from umt.nn.wavenet import Decoder, Stream
from umt.sampling import sample

log = logging.getLogger(__name__)


def _frame_loop(
    prev: torch.Tensor,
    noise: torch.Tensor,
    out: torch.Tensor,
    temperature: float,
    t0: int,
    bufs: list[torch.Tensor],
    weights: list[list[torch.Tensor]],
    head: list[torch.Tensor],
    dil: torch.Tensor,
    offset: torch.Tensor,
    gate: int,
) -> torch.Tensor:
    ring, inputs, past, cond, skip, skip_bias, embed = bufs
    last = len(weights) - 1
    for s in range(noise.shape[0]):
        slots = offset + (t0 + s) % dil
        torch.index_select(ring, 0, slots, out=past)
        torch.index_select(embed, 0, prev, out=inputs[0])
        skip.copy_(skip_bias)
        for i, w in enumerate(weights):
            a = torch.addmm(cond[i], past[i], w[0])
            a.addmm_(inputs[i], w[1])
            g = a[:, :gate].tanh_().mul_(a[:, gate:].sigmoid_())
            skip.addmm_(g, w[2])
            if i < last:
                nxt = inputs[i + 1]
                torch.add(inputs[i], w[4], out=nxt)
                nxt.addmm_(g, w[3])
        ring.index_copy_(0, slots, inputs)
        logits = F.linear(F.relu(F.linear(F.relu(skip), head[0], head[1])), head[2], head[3])
        prev = sample(logits, noise[s], temperature)
        out[s] = prev
    return prev


_scripted = None


def scripted_loop():
    """The scripted :func:`_frame_loop`, or None where TorchScript cannot compile it."""
    global _scripted
    if _scripted is None:
        try:
            with warnings.catch_warnings():
                # Deprecated in favour of torch.compile, which takes minutes to compile this
                # loop per decoder; TorchScript takes about a second (measured in bench/).
                warnings.simplefilter("ignore", DeprecationWarning)
                _scripted = torch.jit.script(_frame_loop)
        except Exception as err:  # noqa: BLE001 - any failure means: use the eager path
            log.warning("TorchScript unavailable (%s); generating in eager mode", err)
            _scripted = False
    return _scripted or None


def run_frame(
    dec: Decoder,
    st: Stream,
    prev: torch.Tensor,
    noise: torch.Tensor,
    out: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Generate ``noise.shape[0]`` steps of one stream after its ``set_condition``.

    Args:
        dec: The decoder whose weights ``st`` views.
        st: Its streaming buffers (:class:`~umt.nn.wavenet.Stream`), one per concurrent thread.
        prev: (B,) int64 class of the previous sample.
        noise: (S, B) uniforms, one row per step.
        out: (S, B) int64, receives the sampled classes.
        temperature: Softmax temperature (0 = greedy).

    Returns:
        (B,) the last sampled classes.
    """
    loop = scripted_loop()
    if loop is None or not st.has_cond:
        raise RuntimeError("run_frame needs TorchScript and a conditioning frame")
    weights = [list(args[5]) for args in st.layer_args]
    head = [dec.head1.weight, dec.head1.bias, dec.head2.weight, dec.head2.bias]
    bufs = [st.ring, st.inputs, st.past, st.cond, st.skip, st.skip_bias, dec.embed.weight]
    prev = loop(prev, noise, out, temperature, st.t, bufs, weights, head, st.dil, st.offset,
                dec.cfg.gate)
    st.t += noise.shape[0]
    return prev
