"""BT.601 luma as the SR papers compute it: Y in [16, 235], unrounded (MATLAB `rgb2ycbcr` on doubles)."""
from __future__ import annotations

import numpy as np
import torch

# Row 1 of MATLAB's rgb2ycbcr matrix: Y = 16 + (65.481 R + 128.553 G + 24.966 B) for RGB in [0, 1].
Y_WEIGHTS = (65.481, 128.553, 24.966)
Y_OFFSET = 16.0


def rgb_to_y(img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Y of an RGB image on the [16, 235] scale.

    numpy `HWC` (integer dtypes are read as [0, 255], floats as [0, 1]) -> `HW` float64;
    tensors `(..., 3, H, W)` (uint8 as [0, 255], floats as [0, 1]) -> `(..., 1, H, W)`, float64 for
    uint8 input, else the input's float dtype.
    """
    if isinstance(img, np.ndarray):
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"rgb_to_y: expected an HWC RGB array, got shape {img.shape}")
        rgb = img.astype(np.float64) / (255.0 if not np.issubdtype(img.dtype, np.floating) else 1.0)
        return rgb @ np.array(Y_WEIGHTS) + Y_OFFSET
    if img.dim() < 3 or img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected an RGB tensor (..., 3, H, W), got shape {tuple(img.shape)}")
    rgb = img.double() / 255.0 if not img.is_floating_point() else img
    w = torch.tensor(Y_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    return (rgb * w).sum(-3, keepdim=True) + Y_OFFSET


def y_to_gray(y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Y ([16, 235]) -> full-range luma ([0, 255]); maps a gray RGB pixel (v, v, v) back to v."""
    return (y - Y_OFFSET) * (255.0 / sum(Y_WEIGHTS))
