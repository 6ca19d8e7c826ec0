"""Streaming (cached) generation state of a WaveNet decoder: one step of every layer at a time.

A :class:`Stream` holds a ring of each layer's recent inputs, so a step costs a few matrix
products per layer instead of a forward pass over the receptive field. Its weights are a
rewrite of the decoder's (:func:`step_params`) that computes the same logits with fewer,
cheaper operations per step:

- ``tanh(f) = 2 sigmoid(2 f) - 1``: the filter half of each conv is scaled by 2, so the gate is
  one sigmoid over both halves and one fused multiply-add. Measured on paper size, batch 128,
  one thread: tanh of the strided filter half took 89 us a layer, sigmoid of the other 24 us.
  That gives the gate's negative, so the layer's output weights are negated.
- The residual biases are folded into the conv biases (their effect on each layer's input is a
  constant), so a layer's output is one ``addmm`` into the ring; the ring starts at minus that
  constant, which stands for the zeros before the first sample.
- Each layer's ring has dilation + 1 rows, so the new input never overwrites the delayed one
  still to be read: the step reads and writes ring rows in place, no gather or scatter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from umt.nn.wavenet import Decoder


@dataclass
class StepParams:
    """A decoder's weights in the form :func:`step_logits` reads (see the module docstring).

    Attributes:
        weights: Per layer ``[w_past, w_now, w_skip, w_res]``: (R, 2G), (R, 2G), (G, S), (G, R).
        conv_bias: (L, 1, 2G) conv biases with the residual biases folded in, filter half x2.
        scale: (2G,) 2 on the filter half, 1 on the gate half.
        ring_start: (L, R) initial ring value of each layer: minus its folded residual bias.
        skip_bias: (S,) sum of the layers' skip biases.
        embed: (classes, R) input embedding.
        head: The output head's ``[w1, b1, w2, b2]``.
    """

    weights: list[list[torch.Tensor]]
    conv_bias: torch.Tensor
    scale: torch.Tensor
    ring_start: torch.Tensor
    skip_bias: torch.Tensor
    embed: torch.Tensor
    head: list[torch.Tensor]


@torch.no_grad()
def step_params(dec: Decoder) -> StepParams:
    """Rewrite ``dec``'s weights for streaming; one copy, shared by any number of streams."""
    G, R = dec.cfg.gate, dec.cfg.residual
    p = dec.embed.weight
    scale = torch.ones(2 * G, device=p.device, dtype=p.dtype)
    scale[:G] = 2
    c = torch.zeros(R, device=p.device, dtype=p.dtype)  # residual biases summed so far
    weights, conv_bias, ring_start = [], [], []
    for layer in dec.layers:
        w_past, w_now = layer.conv.weight  # (2G, R) each; tap 0 sees t - dilation
        out_w, out_b = layer.out.weight, layer.out.bias  # (R + S, G): residual rows first
        weights.append([
            (w_past.t() * scale).contiguous(), (w_now.t() * scale).contiguous(),
            -out_w[R:].t().contiguous(), -out_w[:R].t().contiguous(),
        ])
        conv_bias.append((layer.conv.bias + (w_past + w_now) @ c) * scale)
        ring_start.append(-c)
        c = c + out_b[:R]
    head = [dec.head1.weight, dec.head1.bias, dec.head2.weight, dec.head2.bias]
    return StepParams(
        weights=weights,
        conv_bias=torch.stack(conv_bias).unsqueeze(1),
        scale=scale,
        ring_start=torch.stack(ring_start),
        skip_bias=sum(layer.out.bias[R:] for layer in dec.layers).detach(),
        embed=dec.embed.weight.detach(),
        head=[w.detach() for w in head],
    )


class Stream:
    """Buffers of one streaming session of a :class:`~umt.nn.wavenet.Decoder` over ``batch``
    sequences; one per thread that generates.

    Args:
        dec: The decoder.
        batch: Sequences generated in lock-step.
        params: :func:`step_params` of ``dec``, to share one copy among streams.
    """

    def __init__(self, dec: Decoder, batch: int, params: StepParams | None = None) -> None:
        p = params or step_params(dec)
        kw = {"device": p.embed.device, "dtype": p.embed.dtype}
        G, L = dec.cfg.gate, len(dec.layers)
        self.params = p
        self.size = [layer.dilation + 1 for layer in dec.layers]
        self.offset = [sum(self.size[:i]) for i in range(L)]
        self.ring = torch.empty(sum(self.size), batch, dec.cfg.residual, **kw)
        for i in range(L):
            self.ring[self.offset[i] : self.offset[i] + self.size[i]] = p.ring_start[i]
        self.slots = list(self.ring.unbind(0))
        self.cond = torch.empty(L, batch, 2 * G, **kw)
        self.conds = list(self.cond.unbind(0))
        self.a = torch.empty(batch, 2 * G, **kw)
        self.g = torch.empty(batch, G, **kw)
        self.skip = torch.empty(batch, dec.cfg.skip, **kw)
        # The argument lists of step_logits, made once: at small batch, Python's cost of
        # slicing per step would dominate.
        self.bufs = [self.a, self.a[:, :G], self.a[:, G:], self.g, self.skip, p.skip_bias,
                     p.embed]
        # step_logits' arguments after (prev, t), in its order: the one place that lists them.
        self.args = (self.slots, self.offset, self.size, self.conds, p.weights, self.bufs,
                     p.head)
        self.has_cond, self.t = False, 0

    @property
    def batch(self) -> int:
        return self.skip.shape[0]

    def require_condition(self) -> None:
        """Raise unless :meth:`set_condition` has run: a step needs a conditioning frame."""
        if not self.has_cond:
            raise RuntimeError("a streaming step needs a conditioning frame (set_condition)")

    @torch.no_grad()
    def set_condition(self, cond: torch.Tensor) -> None:
        """Condition the next steps on one latent frame: cond (B, layers, 2 * gate)."""
        # (L, B, 2G) with the biases folded in: once per frame, not once per step.
        torch.addcmul(self.params.conv_bias, cond.transpose(0, 1), self.params.scale,
                      out=self.cond)
        self.has_cond = True

    @torch.no_grad()
    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """Logits for the next sample, after :meth:`set_condition`: prev (B,) -> (B, classes)."""
        self.require_condition()
        logits = step_logits(prev, self.t, *self.args)
        self.t += 1
        return logits


def step_logits(
    prev: torch.Tensor,
    t: int,
    slots: list[torch.Tensor],
    offset: list[int],
    size: list[int],
    conds: list[torch.Tensor],
    weights: list[list[torch.Tensor]],
    bufs: list[torch.Tensor],
    head: list[torch.Tensor],
) -> torch.Tensor:
    """One streaming step of every layer, in a :class:`Stream`'s preallocated buffers.

    Written for TorchScript as well as eager mode: :mod:`umt.fastpath` loops it in a script.
    The weights are :func:`step_params`' rewrite of the layers: the gate is one sigmoid over
    both halves and one fused multiply-add, and no bias is added per step.

    Args:
        prev: (B,) int64 class of the previous sample.
        t: Steps already taken by this stream.
        slots: :attr:`Stream.slots`, the ring's (B, R) rows; layer i owns ``size[i]`` rows
            from ``offset[i]``, and its input at step t lives in row ``offset[i] + t % size[i]``.
        offset: First ring row of each layer.
        size: Ring rows of each layer: its dilation + 1.
        conds: Per layer (B, 2G), the frame's conditioning with the biases folded in.
        weights: Per layer ``[w_past, w_now, w_skip, w_res]``, (in, out) matrices.
        bufs: ``[a, a_filter, a_gate, g, skip, skip_bias, embed]`` of the :class:`Stream`.
        head: The output head's weights and biases.

    Returns:
        (B, classes) logits of the next sample.
    """
    a, a_filter, a_gate, g, skip, skip_bias, embed = bufs
    torch.index_select(embed, 0, prev, out=slots[offset[0] + t % size[0]])
    skip.copy_(skip_bias)
    last = len(weights) - 1
    for i, w in enumerate(weights):
        w_past, w_now, w_skip, w_res = w
        x = slots[offset[i] + t % size[i]]  # (B, R) input at t
        past = slots[offset[i] + (t + 1) % size[i]]  # input at t - dilation: the oldest row
        torch.addmm(conds[i], past, w_past, out=a)  # (B, 2G)
        a.addmm_(x, w_now)
        a.sigmoid_()
        torch.addcmul(a_gate, a_filter, a_gate, value=-2.0, out=g)  # -tanh(f) * sigmoid(s)
        skip.addmm_(g, w_skip)
        if i < last:  # the last layer's residual output is never read
            torch.addmm(x, g, w_res, out=slots[offset[i + 1] + t % size[i + 1]])
    return F.linear(F.relu(F.linear(F.relu(skip), head[0], head[1])), head[2], head[3])


