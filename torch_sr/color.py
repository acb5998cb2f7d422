"""BT.601 colour, the one definition every module uses: Y as the SR papers score it, YCbCr, grey luma.

Y and YCbCr are on the studio range, as MATLAB `rgb2ycbcr` computes them (Y in [16, 235]): PSNR-Y is
scored on exactly this Y and Y-only models are trained on it. Grey luma is full-range (PIL's
`convert("L")`): a grey pixel stays the same grey.
"""
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


# Rows: Y, Cb, Cr for RGB in [0, 1], results in [0, 255] (MATLAB rgb2ycbcr).
_RGB_TO_YCBCR = torch.tensor(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=torch.float64
)
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)
LUMA = (0.299, 0.587, 0.114)  # full-range BT.601 luma: RGB -> grey, as PIL's convert("L")


def _apply(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njhw->nihw", matrix.to(x.device, x.dtype), x)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """`(N, 3, H, W)` RGB in [0, 1] -> YCbCr in [0, 1] (Y in [16, 235] / 255)."""
    offset = (_YCBCR_OFFSET / 255).to(rgb.device, rgb.dtype).view(1, 3, 1, 1)
    return _apply(_RGB_TO_YCBCR / 255, rgb) + offset


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `rgb_to_ycbcr` (no clamping)."""
    offset = (_YCBCR_OFFSET / 255).to(ycbcr.device, ycbcr.dtype).view(1, 3, 1, 1)
    return _apply(torch.linalg.inv(_RGB_TO_YCBCR / 255), ycbcr - offset)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """`(N, 3, H, W)` -> `(N, 1, H, W)` full-range luma (a grey pixel stays the same grey)."""
    w = torch.tensor(LUMA, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)
