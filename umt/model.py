"""The universal translation network: one shared encoder, one decoder per domain."""

from __future__ import annotations

import torch
from torch import nn

from umt.audio import MU, mu_law_decode, mu_law_encode
from umt.config import ModelConfig
from umt.features import EXCITATION, LATENT, NOTES, excitation
from umt.nn.condition import Inputs, extract, has_note_head, reads_notes, resolve_inputs
from umt.nn.decoders import build_decoder
from umt.nn.notes import NoteHead
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
        # The note head rides on the shared encoder when enabled, or when a decoder reads notes.
        heads = has_note_head(cfg)
        self.note_head = NoteHead(cfg.encoder.channels, cfg.notes.hop) if heads else None
        self.decoders = nn.ModuleDict({name: self.new_decoder() for name in domains})

    @property
    def reads_notes(self) -> bool:
        """Whether the decoders read a ``notes`` input."""
        return reads_notes(self.inputs)

    @property
    def domains(self) -> list[str]:
        return list(self.decoders.keys())

    def new_decoder(self) -> nn.Module:
        """A freshly initialised decoder of this model's kind and sizes."""
        return build_decoder(self.cfg)

    def condition(self, x: torch.Tensor, z: torch.Tensor | None = None,
                  notes: torch.Tensor | None = None) -> Inputs:
        """The decoders' named inputs for source audio x (B, T), {name: (B, C, F)}.

        Args:
            x: (B, T) source audio.
            z: Its latent, when already computed (e.g. of an augmented copy).
            notes: (B, 176, F) note activity and onsets (labels, or a tracker's), else the
                note head's probabilities.
        """
        inputs = extract(self.inputs, x)
        names = {s.feature: s.name for s in self.inputs}
        want_notes = NOTES in names and notes is None
        if (LATENT in names and z is None) or want_notes:
            latent, logits = self.encode_notes(x, notes=want_notes)
            z = latent if z is None else z  # a given latent (of the augmented copy) stays
            notes = torch.sigmoid(logits) if want_notes else notes
        if LATENT in names:
            inputs[names[LATENT]] = z
        if NOTES in names:
            inputs[names[NOTES]] = notes
        if EXCITATION in names:
            inputs[names[EXCITATION]] = excitation(notes, x.shape[-1], self.cfg.notes.hop)
        return inputs

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent of a waveform.

        Args:
            x: (B, T) float audio in [-1, 1]; quantised to 8-bit mu-law as the decoder sees it.

        Returns:
            (B, latent_dim, ceil(T / pool)).
        """
        return self.encode_notes(x, notes=False)[0]

    def encode_notes(self, x: torch.Tensor,
                     notes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent and note logits of a waveform, the encoder's trunk run once.

        Args:
            x: (B, T) float audio in [-1, 1].
            notes: Whether to run the note head (when the model has one).

        Returns:
            z (B, latent_dim, ceil(T / pool)) and logits (B, 176, ceil(T / hop)) or None.
        """
        companded = 2 * mu_law_encode(x).float() / MU - 1
        h = self.encoder.trunk(companded.unsqueeze(1))
        logits = self.note_head(h) if notes and self.note_head is not None else None
        return self.encoder.latent(h), logits

    @staticmethod
    def quantize(x: torch.Tensor) -> torch.Tensor:
        """Float audio (any shape) to mu-law classes (same shape)."""
        return mu_law_encode(x)

    @staticmethod
    def dequantize(q: torch.Tensor) -> torch.Tensor:
        """Mu-law classes (any shape) to float audio (same shape)."""
        return mu_law_decode(q)
