"""The universal translation network: one shared encoder, one decoder per domain."""

from __future__ import annotations

import torch
from torch import nn

from umt.audio import MU, mu_law_decode, mu_law_encode
from umt.config import ModelConfig
from umt.features import LATENT
from umt.nn.condition import Inputs, extract, resolve_inputs
from umt.nn.decoders import build_decoder
from umt.nn.wavenet import Encoder


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
        self.inputs = resolve_inputs(cfg)
        self.encoder = Encoder(cfg.encoder)
        self.decoders = nn.ModuleDict({name: self.new_decoder() for name in domains})

    @property
    def domains(self) -> list[str]:
        return list(self.decoders.keys())

    def new_decoder(self) -> nn.Module:
        """A freshly initialised decoder of this model's kind and sizes."""
        return build_decoder(self.cfg)

    def condition(self, x: torch.Tensor, z: torch.Tensor | None = None) -> Inputs:
        """The decoders' named inputs for source audio x (B, T): the latent (``z`` when given,
        e.g. of an augmented copy, else the encoding of x) and every feature, {name: (B, C, F)}."""
        inputs = extract(self.inputs, x)
        for spec in self.inputs:
            if spec.feature == LATENT:
                inputs[spec.name] = self.encode(x) if z is None else z
        return inputs

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
