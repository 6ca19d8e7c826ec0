"""Conditioning inputs added through config alone: a per-frame and a per-sample input reach
training, teacher forcing, streaming, chunked generation, export and the Translator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_wavenet import stream_against_teacher
from umt_helpers import model_config

from umt.checkpoint import atomic_save, export_state
from umt.config import ModelConfig, to_dataclass, to_dict
from umt.errors import UmtError
from umt.features import frame_mean, loudness
from umt.generate import Packed, generate_group, plan_chunks
from umt.inference import Translator
from umt.model import UniversalTranslator
from umt.nn.condition import resolve_inputs
from umt.sampling import sample

# The latent at 800 samples, loudness at 400, the source per sample: frame = gcd = 400.
TOY_INPUTS = [
    {"name": "z", "feature": "latent"},
    {"name": "loud", "feature": "loudness", "hop": 400},
    {"name": "src", "feature": "source", "hop": 1},
]


def toy_config() -> ModelConfig:
    """The tiny model with two more inputs, made from a plain dict as YAML would give it."""
    raw = to_dict(model_config("tiny"))
    raw["condition"] = TOY_INPUTS
    return to_dataclass(ModelConfig, raw)


@pytest.fixture(scope="module")
def toy_model() -> UniversalTranslator:
    torch.manual_seed(0)
    model = UniversalTranslator(toy_config(), ["a"]).eval()
    # Larger weights than the default init, so that each toy input visibly matters.
    with torch.no_grad():
        model.decoders["a"].condition.per_sample["src"].weight.mul_(20)
        model.decoders["a"].condition.per_frame["loud"].weight.mul_(20)
    return model


def _audio(batch: int, T: int, seed: int = 0) -> torch.Tensor:
    """A 220 Hz tone whose level jumps every 300 samples (so loudness frames differ), plus
    noise: (batch, T)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / 16_000
    level = torch.rand(batch, -(-T // 300), generator=g).repeat_interleave(300, 1)[:, :T]
    return 0.4 * torch.sin(2 * np.pi * 220 * t) * level + 0.05 * (
        torch.rand(batch, T, generator=g) - 0.5)


def test_config_resolves_each_input_at_its_own_rate():
    specs = {s.name: s for s in resolve_inputs(toy_config())}
    assert (specs["z"].hop, specs["z"].channels) == (800, 16)
    assert (specs["loud"].hop, specs["src"].hop) == (400, 1)
    dec = UniversalTranslator(toy_config(), ["a"]).decoders["a"]
    assert dec.frame == 400
    assert set(dec.condition.per_frame) == {"z", "loud"} and set(dec.condition.per_sample) == {
        "src"}


@pytest.mark.parametrize("bad,match", [
    ({"name": "x", "feature": "nope"}, "unknown feature"),
    ({"name": "z", "feature": "latent", "hop": 400}, "hop 800"),
    ({"name": "z", "feature": "loudness"}, "unique"),
])
def test_bad_inputs_are_one_line_errors(bad, match):
    raw = to_dict(model_config("tiny"))
    raw["condition"] = [TOY_INPUTS[0], bad]
    with pytest.raises(UmtError, match=match):
        UniversalTranslator(to_dataclass(ModelConfig, raw), ["a"])


def test_features_have_their_frames():
    x = torch.zeros(2, 1000)
    x[:, :400] = 0.5
    loud = loudness(x, 400)
    assert loud.shape == (2, 1, 3)
    assert loud[0, 0, 0] > 0.8 and loud[0, 0, 1] == -1  # -6 dBFS, then silence
    torch.testing.assert_close(frame_mean(torch.ones(1, 1, 1000), 400), torch.ones(1, 1, 3))


def test_streaming_equals_teacher_forced_with_toy_inputs(toy_model):
    x = _audio(2, 2100)
    with torch.no_grad():
        inputs = toy_model.condition(x)
        q = toy_model.quantize(x)
        dec = toy_model.decoders["a"]
        full = dec(q, inputs)
        stream_against_teacher(dec, q, inputs, full)


def test_every_input_changes_the_output(toy_model):
    x = _audio(1, 1200)
    dec = toy_model.decoders["a"]
    with torch.no_grad():
        inputs = toy_model.condition(x)
        q = toy_model.quantize(x)
        base = dec(q, inputs)
        for name in inputs:
            other = dict(inputs, **{name: inputs[name] + 0.5})
            assert (dec(q, other) - base).abs().max() > 1e-3, name


def test_chunks_slice_every_input_as_teacher_forcing_sees_it(toy_model):
    # Chunks start mid-input (at 800 and 1600 after a warm-up of 800): each chunk's samples
    # must be what teacher forcing over the same window with the same noise samples.
    dec = toy_model.decoders["a"]
    x = _audio(1, 4000, seed=1)
    with torch.no_grad():
        inputs = toy_model.condition(x)
        plan = plan_chunks(4000, dec.frame, max_batch=8, chunk=800, warmup=800, fade=200)
        starts = torch.tensor([plan.start(i) for i in range(1, plan.count)])
        noise = torch.rand(len(starts), plan.steps, generator=torch.Generator().manual_seed(4))
        rows = torch.zeros(len(starts), dtype=torch.long)
        got = generate_group(dec, Packed.of([inputs]), rows, starts, noise, 1.0)
        for b, s in enumerate(starts.tolist()):
            n = min(plan.steps, 4000 - s)
            window = {"z": inputs["z"][..., s // 800 :], "loud": inputs["loud"][..., s // 400 :],
                      "src": inputs["src"][..., s : s + n]}
            logits = dec(got[b : b + 1, :n], window)[:, 0]  # (n, 256)
            expect = torch.stack([sample(logits[t : t + 1], noise[b, t : t + 1], 1.0)[0]
                                  for t in range(n)])
            assert (expect != got[b, :n]).float().mean() < 2e-3, s


def test_training_step_export_and_translator_carry_the_inputs(toy_model, tmp_path):
    model = UniversalTranslator(toy_config(), ["a", "b"])
    x = _audio(2, 1600)
    z = model.encode(x)
    inputs = model.condition(x, z)
    loss = model.decoders["b"].loss(x, inputs)
    loss.backward()
    assert model.decoders["b"].condition.per_sample["src"].weight.grad.abs().sum() > 0
    assert model.decoders["b"].condition.per_frame["loud"].weight.grad.abs().sum() > 0
    path = tmp_path / "toy.pt"
    atomic_save(export_state(model), path)
    tr = Translator.load(path, "cpu", chunk_seconds=0.1, warmup_seconds=0.05, fade_seconds=0.01)
    wav = _audio(1, 8000)[0].numpy()
    latent = tr.encode(wav, 16_000)
    assert set(latent.inputs) == {"z", "loud", "src"}
    out = tr.decode(latent, "a", seed=0)
    assert out.shape == (8000,) and torch.isfinite(out).all()
    silent_src = dict(latent.inputs, src=torch.zeros_like(latent.inputs["src"]))
    other = tr.decode(type(latent)(silent_src, latent.length), "a", seed=0)
    assert (other != out).float().mean() > 0.1  # the per-sample input is read


def test_inputs_come_from_a_command_line_override(toy_root):
    # What `python -m umt.train ... model.condition=[...]` gives: the toy inputs, no code.
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from umt_helpers import CONFIGS

    from umt.config import TrainConfig

    override = ("model.condition=[{name:z,feature:latent},{name:loud,feature:loudness,hop:400},"
                "{name:src,feature:source,hop:1}]")
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        raw = compose("train", overrides=["model=tiny", f"data.root={toy_root}", override])
    cfg = to_dataclass(TrainConfig, OmegaConf.to_container(raw, resolve=True))
    assert [(s.name, s.hop) for s in resolve_inputs(cfg.model)] == [
        ("z", 800), ("loud", 400), ("src", 1)]
