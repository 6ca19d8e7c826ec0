import pytest
import torch
from umt_helpers import model_config

from umt.model import UniversalTranslator
from umt.nn.stream import Stream, step_params
from umt.nn.wavenet import SILENCE, Decoder, Encoder, TimeConv


def _grad_support(decoder: Decoder, T: int, t: int) -> torch.Tensor:
    """Which input positions the output at t depends on (via gradients)."""
    z = torch.randn(1, decoder.cond.in_features, -(-T // decoder.pool))
    h = torch.randn(T, 1, decoder.cfg.residual, requires_grad=True)
    decoder.forward_embedded(h, z)[t].sum().backward()
    return h.grad.abs().sum(dim=(1, 2)) > 0


def test_decoder_is_causal_with_the_formula_receptive_field(tiny_cfg):
    dec = Decoder(tiny_cfg.decoder, tiny_cfg.encoder.latent_dim, tiny_cfg.encoder.pool)
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
    dec = Decoder(tiny_cfg.decoder, tiny_cfg.encoder.latent_dim, tiny_cfg.encoder.pool).eval()
    q = torch.randint(0, 256, (1, 50))
    z = torch.randn(1, tiny_cfg.encoder.latent_dim, 1)
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
        z = model.encode(x)
        q = model.quantize(x)
        full = dec(q, z)  # (T, B, 256)
        cond = dec.project_condition(z)  # (F, B, L, 2G)
        prev = torch.full((2,), SILENCE)
        with dec.streaming(2):
            for t in range(T):
                step = dec.step(prev, cond[t // cfg.encoder.pool])
                torch.testing.assert_close(step, full[t], atol=2e-4, rtol=1e-4)
                prev = q[:, t]


def test_streams_sharing_step_params_keep_their_own_state(tiny_cfg):
    # Two streams on one rewrite of the weights, fed different sequences past the ring's wrap:
    # each must still match its own teacher-forced pass (nothing mutable lives in the params).
    torch.manual_seed(1)
    dec = Decoder(tiny_cfg.decoder, tiny_cfg.encoder.latent_dim, tiny_cfg.encoder.pool).eval()
    T, pool = 2 * dec.receptive_field + 5, dec.pool
    q = torch.randint(0, 256, (2, T))
    z = torch.randn(2, dec.cond.in_features, -(-T // pool))
    params = step_params(dec)
    streams = [Stream(dec, 1, params) for _ in range(2)]
    with torch.no_grad():
        full, cond = dec(q, z), dec.project_condition(z)
        prev = [torch.full((1,), SILENCE) for _ in streams]
        for t in range(T):
            for b, st in enumerate(streams):
                if t % pool == 0:
                    st.set_condition(cond[t // pool, b : b + 1])
                torch.testing.assert_close(st.step(prev[b]), full[t, b : b + 1], atol=2e-4,
                                           rtol=1e-4)
                prev[b] = q[b : b + 1, t]


def test_step_without_condition_is_an_error(tiny_cfg):
    dec = Decoder(tiny_cfg.decoder, tiny_cfg.encoder.latent_dim, tiny_cfg.encoder.pool)
    with pytest.raises(RuntimeError, match="conditioning"):
        Stream(dec, 1).step(torch.zeros(1, dtype=torch.long))


def test_step_outside_streaming_is_an_error(tiny_cfg):
    dec = Decoder(tiny_cfg.decoder, tiny_cfg.encoder.latent_dim, tiny_cfg.encoder.pool)
    with pytest.raises(RuntimeError, match="streaming"):
        dec.step(torch.zeros(1, dtype=torch.long), torch.zeros(1, len(dec.layers), 32))
