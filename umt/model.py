"""The universal translation network: one shared encoder, one WaveNet decoder per domain."""

from __future__ import annotations

import torch
from torch import nn

from umt.audio import MU, mu_law_decode, mu_law_encode
from umt.config import ModelConfig
from umt.nn.wavenet import Decoder, Encoder


class UniversalTranslator(nn.Module):
    """Encoder + ``nn.ModuleDict`` of decoders keyed by domain (instrument) name.

    Args:
        cfg: Model sizes.
        domains: Domain names, one decoder each.
    """

    def __init__(self, cfg: ModelConfig, domains: list[str]) -> None:
        super().__init__()
        if len(set(domains)) != len(domains) or not domains:
            raise ValueError(f"domains must be unique and non-empty, got {domains}")
        self.cfg = cfg
        self.encoder = Encoder(cfg.encoder)
        self.decoders = nn.ModuleDict({name: self.new_decoder() for name in domains})

    @property
    def domains(self) -> list[str]:
        return list(self.decoders.keys())

    def new_decoder(self) -> Decoder:
        """A freshly initialised decoder matching this model's sizes."""
        enc = self.cfg.encoder
        return Decoder(self.cfg.decoder, enc.latent_dim, enc.pool)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent of a waveform.

        Args:
            x: (B, T) float audio in [-1, 1]; quantised to 8-bit mu-law as the decoder sees it.

        Returns:
            (B, latent_dim, ceil(T / pool)).
        """
        companded = 2 * mu_law_encode(x).float() / MU - 1
        return self.encoder(companded.unsqueeze(1))

    @staticmethod
    def quantize(x: torch.Tensor) -> torch.Tensor:
        """Float audio (any shape) to mu-law classes (same shape)."""
        return mu_law_encode(x)

    @staticmethod
    def dequantize(q: torch.Tensor) -> torch.Tensor:
        """Mu-law classes (any shape) to float audio (same shape)."""
        return mu_law_decode(q)
