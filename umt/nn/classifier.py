"""The domain-confusion classifier: guesses the instrument from the latent alone."""

from __future__ import annotations

import torch
from torch import nn

from umt.config import ClassifierConfig


class DomainClassifier(nn.Module):
    """1x1 convs with ELU over the latent, logits averaged over time.

    Args:
        cfg: Hidden width, depth and dropout.
        latent_dim: Channels of the latent.
        domains: Number of domains K.
    """

    def __init__(self, cfg: ClassifierConfig, latent_dim: int, domains: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(cfg.dropout)]
        width = latent_dim
        for _ in range(cfg.layers - 1):
            layers += [nn.Conv1d(width, cfg.hidden, 1), nn.ELU()]
            width = cfg.hidden
        layers.append(nn.Conv1d(width, domains, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Classify latents.

        Args:
            z: (B, latent_dim, F).

        Returns:
            (B, K) logits.
        """
        return self.net(z).mean(dim=-1)
