"""Multiply-adds of the networks, counted from their configs (2 FLOPs per multiply-add)."""

from __future__ import annotations

from umt.config import DecoderConfig, EncoderConfig


def decoder_flops_per_sample(cfg: DecoderConfig) -> int:
    """FLOPs to produce one sample's logits with a cached decoder (no recomputation)."""
    layers = cfg.blocks * cfg.layers
    per_layer = cfg.kernel * cfg.residual * 2 * cfg.gate + cfg.gate * (cfg.residual + cfg.skip)
    head = cfg.skip * cfg.skip + cfg.skip * cfg.classes
    return 2 * (layers * per_layer + head)


def encoder_flops_per_sample(cfg: EncoderConfig) -> int:
    """FLOPs of the encoder per input sample."""
    layers = cfg.blocks * cfg.layers
    per_layer = cfg.kernel * cfg.channels**2 + cfg.channels**2
    return 2 * (cfg.kernel * cfg.channels + layers * per_layer + cfg.channels * cfg.latent_dim)
