import pytest
import torch
from umt_helpers import model_config

from umt.model import UniversalTranslator
from umt.nn.decoders import build_decoder
from umt.nn.stream import Stream
from umt.nn.wavenet import SILENCE, Decoder, Encoder, TimeConv


def _z(cfg, batch: int, T: int) -> dict[str, torch.Tensor]:
    return {"z": torch.randn(batch, cfg.encoder.latent_dim, -(-T // cfg.encoder.pool))}


def _grad_support(decoder: Decoder, T: int, t: int) -> torch.Tensor:
    """Which input positions the output at t depends on (via gradients)."""
    z = {"z": torch.randn(1, decoder.condition.spec("z").channels, -(-T // decoder.frame))}
    h = torch.randn(T, 1, decoder.cfg.residual, requires_grad=True)
    decoder.forward_embedded(h, z)[t].sum().backward()
    return h.grad.abs().sum(dim=(1, 2)) > 0


def test_decoder_is_causal_with_the_formula_receptive_field(tiny_cfg):
    dec = build_decoder(tiny_cfg)
    rf = dec.receptive_field
    assert rf == (tiny_cfg.decoder.kernel - 1) * tiny_cfg.decoder.blocks * (
        2**tiny_cfg.decoder.layers - 1
    ) + 1
    T, t = 400, 300
    support = _grad_support(dec, T, t)
    assert not support[t + 1 :].any(), "output depends on the future"
    assert support[t - rf + 1 : t + 1].all()
    assert not support[: t - rf + 1].any()


def test_decoder_shifts_targets_so_q_t_is_never_seen(tiny_cfg):
    dec = build_decoder(tiny_cfg).eval()
    q = torch.randint(0, 256, (1, 50))
    z = _z(tiny_cfg, 1, 50)
    q2 = q.clone()
    q2[0, 20] = (q[0, 20] + 7) % 256
    a, b = dec(q, z), dec(q2, z)
    torch.testing.assert_close(a[:21], b[:21])  # position 20 predicts q[20] without seeing it
    assert not torch.allclose(a[21:], b[21:])


def test_encoder_latent_length_and_non_causality(tiny_cfg):
    enc = Encoder(tiny_cfg.encoder)
    pool = tiny_cfg.encoder.pool
    for T in (pool * 3, pool * 3 + 17):
        z = enc(torch.randn(2, 1, T))
        assert z.shape == (2, tiny_cfg.encoder.latent_dim, -(-T // pool))
    x = torch.randn(1, 1, pool * 2, requires_grad=True)
    enc(x)[0, :, 0].sum().backward()
    assert x.grad[0, 0, pool : pool + 10].abs().sum() > 0  # frame 0 looks ahead of its window


def test_timeconv_matches_conv1d():
    conv = TimeConv(3, 5, 3, dilation=4, causal=False)
    ref = torch.nn.Conv1d(3, 5, 3, dilation=4, padding=4)
    ref.weight.data = conv.weight.data.permute(1, 2, 0).clone()
    ref.bias.data = conv.bias.data.clone()
    x = torch.randn(2, 3, 50)
    torch.testing.assert_close(conv(x.permute(2, 0, 1)), ref(x).permute(2, 0, 1))


@pytest.mark.parametrize(
    "name,T", [("tiny", 2000), ("small", 1700), ("paper", 300), ("release", 200)]
)
def test_streaming_equals_teacher_forced(name, T):
    cfg = model_config(name)
    torch.manual_seed(0)
    model = UniversalTranslator(cfg, ["a"]).eval()
    dec = model.decoders["a"]
    x = 0.3 * torch.randn(2, T).clamp(-1, 1)
    with torch.no_grad():
        inputs = model.condition(x)
        q = model.quantize(x)
        full = dec(q, inputs)  # (T, B, 256)
        stream_against_teacher(dec, q, inputs, full)


def stream_against_teacher(dec: Decoder, q: torch.Tensor, inputs: dict,
                           full: torch.Tensor) -> None:
    """Stream ``dec`` over q (B, T), conditioned as :mod:`umt.generate` conditions a chunk
    that starts at 0, and assert every step's logits equal the teacher-forced ``full``."""
    B, T = q.shape
    P = dec.frame
    st, prev = dec.new_stream(B), torch.full((B,), SILENCE)
    for t in range(T):
        if t % P == 0:
            frame = {s.name: (inputs[s.name][..., t // s.hop : t // s.hop + 1] if s.hop > 1
                              else inputs[s.name][..., t : t + P]) for s in dec.condition.specs}
            st.set_condition(*dec.frame_condition(frame))
        step = st.step(prev, t % P)
        torch.testing.assert_close(step, full[t], atol=2e-4, rtol=1e-4)
        prev = q[:, t]


def test_streams_sharing_step_params_keep_their_own_state(tiny_cfg):
    # Two streams on one rewrite of the weights, fed different sequences past the ring's wrap:
    # each must still match its own teacher-forced pass (nothing mutable lives in the params).
    torch.manual_seed(1)
    dec = build_decoder(tiny_cfg).eval()
    T, P = 2 * dec.receptive_field + 5, dec.frame
    q = torch.randint(0, 256, (2, T))
    z = _z(tiny_cfg, 2, T)["z"]
    params = dec.step_params()
    streams = [dec.new_stream(1, params) for _ in range(2)]
    with torch.no_grad():
        full = dec(q, {"z": z})
        prev = [torch.full((1,), SILENCE) for _ in streams]
        for t in range(T):
            for b, st in enumerate(streams):
                if t % P == 0:
                    st.set_condition(*dec.frame_condition({"z": z[b : b + 1, :, t // P, None]}))
                torch.testing.assert_close(st.step(prev[b]), full[t, b : b + 1], atol=2e-4,
                                           rtol=1e-4)
                prev[b] = q[b : b + 1, t]


def test_step_without_condition_is_an_error(tiny_cfg):
    dec = build_decoder(tiny_cfg)
    with pytest.raises(RuntimeError, match="conditioning"):
        Stream(dec.step_params(), 1).step(torch.zeros(1, dtype=torch.long))


def test_decoder_states_its_streaming_contract(tiny_cfg):
    # Rings of dilation + 1 rows; memory per stream grows with the rings and the steps.
    dec = build_decoder(tiny_cfg)
    assert dec.ring_sizes() == [layer.dilation + 1 for layer in dec.layers]
    assert dec.step_params().ring_size == dec.ring_sizes()
    st = dec.new_stream(3)
    assert st.ring.shape == (sum(dec.ring_sizes()), 3, tiny_cfg.decoder.residual)
    assert dec.bytes_per_stream(2000) - dec.bytes_per_stream(1000) == 12 * 1000
    assert dec.bytes_per_stream(0) >= 4 * st.ring[:, 0].numel()


def test_old_exports_latent_projection_loads(tiny_cfg):
    # Exports before the conditioner named the latent's projection `cond`.
    dec = build_decoder(tiny_cfg)
    sd = dec.state_dict()
    old = {k.replace("condition.per_frame.z.", "cond."): v for k, v in sd.items()}
    assert "cond.weight" in old
    fresh = build_decoder(tiny_cfg)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh.condition.per_frame["z"].weight, sd[
        "condition.per_frame.z.weight"])


def test_decoder_kind_comes_from_the_config(tiny_cfg):
    from umt.errors import UmtError
    from umt.nn.decoders import KINDS

    assert isinstance(build_decoder(tiny_cfg), KINDS["wavenet"](tiny_cfg).__class__)
    tiny_cfg.decoder.kind = "nope"
    with pytest.raises(UmtError, match="unknown decoder kind 'nope'"):
        UniversalTranslator(tiny_cfg, ["a"])


def test_corrupted_teacher_forcing_only_while_training(tiny_cfg):
    tiny_cfg.decoder.corrupt = 0.25
    dec = build_decoder(tiny_cfg)
    q = torch.randint(0, 256, (2, 400))
    z = _z(tiny_cfg, 2, 400)
    dec.eval()
    torch.testing.assert_close(dec(q, z), dec(q, z))  # no corruption at inference
    clean = dec(q, z)
    dec.train()
    torch.manual_seed(0)
    noisy = dec(q, z)
    changed = (noisy - clean).abs().amax(-1) > 1e-6  # (T, B) positions whose past differs
    assert 0.5 < changed.float().mean() < 1.0  # a quarter of inputs, seen by later positions
    tiny_cfg.decoder.corrupt = 0.0
    plain = build_decoder(tiny_cfg)
    plain.load_state_dict(dec.state_dict())
    torch.testing.assert_close(plain.train()(q, z), clean)
