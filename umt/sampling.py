"""Sampling the decoder's 256-way distribution (shared by the eager and scripted loops)."""

from __future__ import annotations

import torch


def sample(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sampling: one uniform per row picks a class.

    Args:
        logits: (B, classes).
        u: (B,) uniforms in [0, 1).
        temperature: Softmax temperature; 0 picks the most likely class.

    Returns:
        (B,) int64 classes.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    p = torch.softmax(logits.float() / temperature, -1)
    cdf = p.cumsum_(-1)
    idx = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1]).unsqueeze(1))
    return idx.squeeze(1).clamp_(max=logits.shape[-1] - 1)
