"""The TorchScript generation loop draws exactly the eager loop's samples, and falls back."""

from __future__ import annotations

import pytest
import torch
from umt_helpers import model_config

from umt import fastpath
from umt.generate import Packed, generate_group
from umt.nn.decoders import build_decoder
from umt.nn.wavenet import Decoder


def _decoder(name: str) -> tuple[Decoder, dict[str, torch.Tensor]]:
    cfg = model_config(name)
    torch.manual_seed(0)
    dec = build_decoder(cfg).eval()
    z = torch.randn(1, cfg.encoder.latent_dim, 6)
    return dec, {"z": z}


def _group(dec: Decoder, inputs: dict, starts: torch.Tensor, noise: torch.Tensor,
           temperature: float = 1.0, fast: bool = True) -> torch.Tensor:
    rows = torch.zeros(len(starts), dtype=torch.long)  # every chunk from the one input
    return generate_group(dec, Packed.of([inputs]), rows, starts, noise, temperature, fast=fast)


def _both(dec: Decoder, z: dict, batch: int, frames: int, temperature: float):
    starts = torch.arange(batch) * dec.frame * 2 - dec.frame
    noise = torch.rand(batch, frames * dec.frame, generator=torch.Generator().manual_seed(1))
    eager = _group(dec, z, starts, noise, temperature, fast=False)
    fast = _group(dec, z, starts, noise, temperature, fast=True)
    return eager, fast


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_scripted_loop_equals_eager(name, temperature):
    dec, z = _decoder(name)
    assert fastpath.scripted_loop() is not None, "TorchScript should compile on this platform"
    eager, fast = _both(dec, z, batch=3, frames=2, temperature=temperature)
    assert eager.shape == (3, 2 * dec.frame)
    assert torch.equal(eager, fast)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper", "release"])
def test_scripted_loop_equals_eager_large(name):
    dec, z = _decoder(name)
    eager, fast = _both(dec, z, batch=2, frames=1, temperature=1.0)
    assert torch.equal(eager, fast)


def test_scripted_loop_samples_follow_the_conditioning():
    # A check that the loop really reads the frame's condition: two latents, two outputs.
    dec, z = _decoder("tiny")
    starts = torch.zeros(1, dtype=torch.long)
    noise = torch.rand(1, dec.frame, generator=torch.Generator().manual_seed(2))
    a = _group(dec, z, starts, noise)
    b = _group(dec, {"z": z["z"] * 3 + 1}, starts, noise)
    assert not torch.equal(a, b)


def test_falls_back_to_eager_when_scripting_fails(monkeypatch, caplog):
    def broken(fn):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(fastpath, "_scripted", None)
    monkeypatch.setattr(torch.jit, "script", broken)
    dec, z = _decoder("tiny")
    eager, fast = _both(dec, z, batch=2, frames=1, temperature=1.0)
    assert fastpath.scripted_loop() is None
    assert "eager" in caplog.text
    assert torch.equal(eager, fast)


def test_worker_threads_each_generate_their_share(monkeypatch):
    # Two worker threads, each with its own stream, must give exactly what the two shares give
    # when generated one after the other (same batch sizes, so the same float rounding).
    from umt import generate as gen_mod
    from umt import threads

    dec, z = _decoder("tiny")
    plan = gen_mod.plan_chunks(5 * dec.frame, dec.frame, max_batch=4, chunk=dec.frame,
                               warmup=dec.frame, fade=100)
    assert plan.count == 5
    monkeypatch.setattr(threads, "cpu_workers", lambda device, fast: 2)
    threaded = gen_mod.generate(dec, z, plan, seed=3, batch=4)
    noise = torch.rand(plan.count, plan.steps, generator=torch.Generator().manual_seed(3))
    parts = []
    for share in (torch.arange(0, 2), torch.arange(2, 4), torch.arange(4, 5)):
        starts = share * plan.chunk - plan.warmup
        parts.append(_group(dec, z, starts, noise[share]))
    expected = gen_mod.stitch(gen_mod.mu_law_decode(torch.cat(parts)).float(), plan)
    assert torch.equal(threaded, expected)
