"""Streaming (cached) generation state of a WaveNet-style decoder: one step of every layer.

A :class:`Stream` holds a ring of each layer's recent inputs, so a step costs a few matrix
products per layer instead of a forward pass over the receptive field. It steps the weights a
decoder hands it as :class:`StepParams`: the decoder owns that rewrite (see
:meth:`umt.nn.wavenet.Decoder.step_params`), this module knows nothing of the decoder itself.
The rewrite computes the same logits with fewer, cheaper operations per step:

- ``tanh(f) = 2 sigmoid(2 f) - 1``: the filter half of each conv is scaled by 2, so the gate is
  one sigmoid over both halves and one fused multiply-add. Measured on paper size, batch 128,
  one thread: tanh of the strided filter half took 89 us a layer, sigmoid of the other 24 us.
  That gives the gate's negative, so the layer's output weights are negated.
- The residual biases are folded into the conv biases (their effect on each layer's input is a
  constant), so a layer's output is one ``addmm`` into the ring; the ring starts at minus that
  constant, which stands for the zeros before the first sample.
- Each layer's ring has dilation + 1 rows, so the new input never overwrites the delayed one
  still to be read: the step reads and writes ring rows in place, no gather or scatter.

No ``from __future__ import annotations`` here: TorchScript reads :class:`StepArgs`' field types.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


@dataclass
class StepParams:
    """A decoder's weights in the form :func:`step_logits` reads (see the module docstring).

    Attributes:
        weights: Per layer ``[w_past, w_now, w_skip, w_res]``: (R, 2G), (R, 2G), (G, S), (G, R).
        conv_bias: (L, 1, 2G) conv biases with the residual biases folded in, filter half x2.
        scale: (2G,) 2 on the filter half, 1 on the gate half.
        ring_start: (L, R) initial ring value of each layer: minus its folded residual bias.
        ring_size: Ring rows of each layer: its dilation + 1.
        skip_bias: (S,) sum of the layers' skip biases.
        embed: (classes, R) input embedding.
        head: The output head's ``[w1, b1, w2, b2]``.
    """

    weights: list[list[torch.Tensor]]
    conv_bias: torch.Tensor
    scale: torch.Tensor
    ring_start: torch.Tensor
    ring_size: list[int]
    skip_bias: torch.Tensor
    embed: torch.Tensor
    head: list[torch.Tensor]

    @property
    def gate(self) -> int:
        return self.scale.shape[0] // 2


class StepArgs(NamedTuple):
    """Everything :func:`step_logits` reads besides the previous sample: the one place its
    argument list exists (a typed container, so the TorchScript loop takes it as is).

    Attributes:
        slots: The ring's (B, R) rows; layer i owns ``size[i]`` rows from ``offset[i]``, and its
            input at step t lives in row ``offset[i] + t % size[i]``.
        offset: First ring row of each layer.
        size: Ring rows of each layer: its dilation + 1.
        conds: Per layer (B, 2G), the frame's conditioning with the biases folded in.
        weights: Per layer ``[w_past, w_now, w_skip, w_res]``, (in, out) matrices.
        bufs: ``[a, a_filter, a_gate, g, skip, skip_bias, embed]``: the stream's buffers.
        head: The output head's weights and biases.
    """

    slots: list[torch.Tensor]
    offset: list[int]
    size: list[int]
    conds: list[torch.Tensor]
    weights: list[list[torch.Tensor]]
    bufs: list[torch.Tensor]
    head: list[torch.Tensor]


class Stream:
    """Buffers of one streaming session over ``batch`` sequences; one per thread that generates.

    Args:
        params: The decoder's :class:`StepParams` (one copy may serve any number of streams).
        batch: Sequences generated in lock-step.
    """

    def __init__(self, params: StepParams, batch: int) -> None:
        p = params
        kw = {"device": p.embed.device, "dtype": p.embed.dtype}
        G, L, R = p.gate, len(p.weights), p.ring_start.shape[1]
        self.params = p
        size = list(p.ring_size)
        offset = [sum(size[:i]) for i in range(L)]
        self.ring = torch.empty(sum(size), batch, R, **kw)
        for i in range(L):
            self.ring[offset[i] : offset[i] + size[i]] = p.ring_start[i]
        self.cond = torch.empty(L, batch, 2 * G, **kw)
        self.a = torch.empty(batch, 2 * G, **kw)
        g = torch.empty(batch, G, **kw)
        self.skip = torch.empty(batch, p.skip_bias.shape[0], **kw)
        # Made once: at small batch, Python's cost of slicing per step would dominate.
        bufs = [self.a, self.a[:, :G], self.a[:, G:], g, self.skip, p.skip_bias, p.embed]
        self.args = StepArgs(list(self.ring.unbind(0)), offset, size, list(self.cond.unbind(0)),
                             p.weights, bufs, p.head)
        self.inject: list[torch.Tensor] = []  # [] or [(S, B, R)]: per-sample input rows
        self.has_cond, self.t = False, 0

    @property
    def batch(self) -> int:
        return self.skip.shape[0]

    def require_condition(self) -> None:
        """Raise unless :meth:`set_condition` has run: a step needs a conditioning frame."""
        if not self.has_cond:
            raise RuntimeError("a streaming step needs a conditioning frame (set_condition)")

    @torch.no_grad()
    def set_condition(self, cond: torch.Tensor, inject: torch.Tensor | None = None) -> None:
        """Condition the next steps on one conditioning frame.

        Args:
            cond: (B, layers, 2 * gate) per-layer conditioning of the frame.
            inject: (S, B, R) per-sample input rows added to the input of the frame's next S
                steps (row s at its step s), or None where the decoder has no per-sample input.
        """
        # (L, B, 2G) with the biases folded in: once per frame, not once per step.
        torch.addcmul(self.params.conv_bias, cond.transpose(0, 1), self.params.scale,
                      out=self.cond)
        self.inject = [] if inject is None else [inject]
        self.has_cond = True

    @torch.no_grad()
    def step(self, prev: torch.Tensor, row: int = 0) -> torch.Tensor:
        """Logits for the next sample, after :meth:`set_condition`: prev (B,) -> (B, classes).

        ``row`` is the step's index in the frame's per-sample input rows."""
        self.require_condition()
        extra = self.inject[0][row] if self.inject else None
        logits = step_logits(prev, self.t, self.args, extra)
        self.t += 1
        return logits


def step_logits(
    prev: torch.Tensor, t: int, a: StepArgs, extra: Optional[torch.Tensor]  # noqa: UP045 - TorchScript
) -> torch.Tensor:
    """One streaming step of every layer, in a :class:`Stream`'s preallocated buffers.

    Written for TorchScript as well as eager mode: :mod:`umt.fastpath` loops it in a script.
    The weights are a decoder's :class:`StepParams`: the gate is one sigmoid over both halves
    and one fused multiply-add, and no bias is added per step.

    Args:
        prev: (B,) int64 class of the previous sample.
        t: Steps already taken by this stream.
        a: The stream's :class:`StepArgs`.
        extra: (B, R) this step's per-sample input, added to the embedded previous sample; None
            where the decoder has none.

    Returns:
        (B, classes) logits of the next sample.
    """
    slots, offset, size, conds = a.slots, a.offset, a.size, a.conds
    act, a_filter, a_gate, g, skip, skip_bias, embed = a.bufs
    first = slots[offset[0] + t % size[0]]
    torch.index_select(embed, 0, prev, out=first)
    if extra is not None:
        first.add_(extra)
    skip.copy_(skip_bias)
    last = len(a.weights) - 1
    for i, w in enumerate(a.weights):
        w_past, w_now, w_skip, w_res = w
        x = slots[offset[i] + t % size[i]]  # (B, R) input at t
        past = slots[offset[i] + (t + 1) % size[i]]  # input at t - dilation: the oldest row
        torch.addmm(conds[i], past, w_past, out=act)  # (B, 2G)
        act.addmm_(x, w_now)
        act.sigmoid_()
        torch.addcmul(a_gate, a_filter, a_gate, value=-2.0, out=g)  # -tanh(f) * sigmoid(s)
        skip.addmm_(g, w_skip)
        if i < last:  # the last layer's residual output is never read
            torch.addmm(x, g, w_res, out=slots[offset[i + 1] + t % size[i + 1]])
    h = F.linear(F.relu(F.linear(F.relu(skip), a.head[0], a.head[1])), a.head[2], a.head[3])
    return h
