"""Total variation: the mean absolute difference between neighbouring pixels."""
from __future__ import annotations

import torch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation of an (N, C, H, W) batch, averaged over pixels.

    Used as a small penalty on generator outputs to discourage high-frequency noise (the
    ResNet + PixelShuffle feature loss).
    """
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
