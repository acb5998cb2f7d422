"""Metric inputs: the uint8 image a user would save (scores describe files, not floats), then the planes compared."""
from __future__ import annotations

import numpy as np
import torch

from torch_sr.errors import TorchSRError
from torch_sr.color import rgb_to_y, y_to_gray


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Float [0, 1] -> uint8 exactly as a saved image: clamp, scale by 255, round half to even."""
    return img.detach().clamp(0, 1).mul(255).round().to(torch.uint8)


def as_uint8_hwc(img: np.ndarray | torch.Tensor, what: str = "image") -> np.ndarray:
    """uint8 `HWC` array from a uint8 `HW`/`HWC` array or a float [0, 1] tensor `CHW` / `1CHW`."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise TorchSRError(f"{what}: expected one image (1, C, H, W), got a batch of shape {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3:
            raise TorchSRError(f"{what}: expected a (C, H, W) or (1, C, H, W) tensor, got shape {tuple(t.shape)}")
        t = to_uint8(t) if t.is_floating_point() else t
        if t.dtype != torch.uint8:
            raise TorchSRError(f"{what}: expected a float [0, 1] or uint8 tensor, got {t.dtype}")
        return np.ascontiguousarray(t.permute(1, 2, 0).numpy())
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise TorchSRError(
                f"{what}: numpy images must be uint8 (as read from a file), got {img.dtype}; pass floats as a "
                "[0, 1] tensor instead"
            )
        if img.ndim == 2:
            return img[:, :, None]
        if img.ndim != 3:
            raise TorchSRError(f"{what}: expected an HW or HWC array, got shape {img.shape}")
        return img
    raise TorchSRError(f"{what}: expected a numpy array or torch tensor, got {type(img).__name__}")


def _score_channels(img: np.ndarray, y_channel: bool, gray: bool) -> np.ndarray:
    """The float64 `HWC` planes a metric compares (see `prepare_pair`)."""
    if img.shape[2] == 1:
        return img.astype(np.float64) if y_channel else np.repeat(img, 3, axis=2).astype(np.float64)
    if img.shape[2] != 3:
        raise TorchSRError(f"expected 1 (grayscale) or 3 (RGB) channels, got {img.shape[2]}")
    if not y_channel:
        return img.astype(np.float64)
    y = rgb_to_y(img)
    return (y_to_gray(y) if gray else y)[:, :, None]


def check_crop_border(shape: tuple[int, ...], crop_border: int) -> None:
    """Refuse a border to shave (`HWC` shape) that is negative or leaves nothing of the image."""
    if crop_border < 0 or 2 * crop_border >= min(shape[:2]):
        raise TorchSRError(f"crop_border={crop_border} leaves nothing of a {shape[1]}x{shape[0]} image")


def prepare_pair(
    img: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 `HWC` planes on the [0, 255] scale, as the benchmark scripts compare them.

    `y_channel`: RGB images are reduced to BT.601 Y ([16, 235]); grayscale images (one channel) are
    scored on their own values, and an RGB image compared with one is reduced to the luma that maps
    gray to gray, (Y - 16) * 255 / 219 — this is how the MATLAB scripts behind the published tables
    score Set14's grayscale `bridge`. Otherwise all RGB channels are compared (a grayscale image
    counts as three equal channels). Then `crop_border` pixels are shaved on every side.
    """
    a, b = as_uint8_hwc(img, "image"), as_uint8_hwc(ref, "reference")
    if a.shape[:2] != b.shape[:2]:
        raise TorchSRError(f"image and reference differ in size: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]}")
    check_crop_border(a.shape, crop_border)
    gray = a.shape[2] == 1 or b.shape[2] == 1
    a, b = _score_channels(a, y_channel, gray), _score_channels(b, y_channel, gray)
    if crop_border:
        a, b = a[crop_border:-crop_border, crop_border:-crop_border], b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b
