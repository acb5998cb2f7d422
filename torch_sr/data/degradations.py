"""The degradations that turn an HR image into a training or test input: modcrop, Gaussian blur, JPEG.

Randomised choices (a sigma or a JPEG quality drawn from a range) come from `rng`, a seed or a
`numpy.random.Generator`, so the same seed always gives the same degraded image.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

Image = np.ndarray | torch.Tensor
RNG = np.random.Generator | int | None


def modcrop(img: Image, scale: int) -> Image:
    """Crop the bottom/right so height and width are multiples of `scale` (numpy HW/HWC, tensor (..., H, W))."""
    if scale < 1:
        raise ValueError(f"modcrop: scale must be at least 1, got {scale}")
    if isinstance(img, np.ndarray):
        h, w = img.shape[:2]
        return img[: h - h % scale, : w - w % scale]
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def _draw(value: float | tuple[float, float], rng: RNG, integer: bool = False) -> float:
    """A fixed value, or one drawn uniformly from an inclusive (low, high) range."""
    if not isinstance(value, (tuple, list)):
        return value
    low, high = value
    gen = np.random.default_rng(rng)
    return int(gen.integers(low, high + 1)) if integer else float(gen.uniform(low, high))


def gaussian_kernel(sigma: float, radius: int | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of `2 * radius + 1` taps (radius defaults to ceil(3 sigma))."""
    if sigma <= 0:
        raise ValueError(f"gaussian_kernel: sigma must be positive, got {sigma}")
    radius = max(1, math.ceil(3 * sigma)) if radius is None else radius
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur_tensor(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = gaussian_kernel(sigma).to(device=x.device, dtype=x.dtype)
    r = (g.numel() - 1) // 2
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.pad(y, (r, r, r, r), mode="replicate")
    y = F.conv2d(F.conv2d(y, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))
    return y.reshape(shape)


def gaussian_blur(img: Image, sigma: float | tuple[float, float], rng: RNG = None) -> Image:
    """Separable Gaussian blur with replicated borders (the optional blur before downsampling).

    Tensors `(..., H, W)` float stay float; numpy uint8 `HW`/`HWC` comes back uint8 (rounded), as the
    blurred image would be saved. `sigma` may be a (low, high) range drawn from `rng`.
    """
    sigma = _draw(sigma, rng)
    if isinstance(img, torch.Tensor):
        return _blur_tensor(img, sigma) if img.is_floating_point() else _blur_tensor(img.double(), sigma).round().clamp(0, 255).to(img.dtype)
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"gaussian_blur: unsupported dtype {img.dtype}; use uint8 or float")
    t = torch.from_numpy(img.astype(np.float64))  # a writable copy, whatever the input's flags
    t = t.permute(2, 0, 1) if img.ndim == 3 else t
    out = _blur_tensor(t, sigma)
    out = (out.permute(1, 2, 0) if img.ndim == 3 else out).numpy()
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if img.dtype == np.uint8 else out.astype(img.dtype)


def jpeg_compress(img: Image, quality: int | tuple[int, int], rng: RNG = None) -> Image:
    """Encode as JPEG at `quality` (1-95, or a range drawn from `rng`) and decode again with PIL.

    numpy uint8 `HW`/`HWC` in and out; a float [0, 1] tensor `(C, H, W)` is quantised to uint8 first
    (JPEG stores 8 bits) and comes back as a float tensor.
    """
    from PIL import Image as PILImage

    quality = int(_draw(quality, rng, integer=True))
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg_compress: quality must be in 1..100, got {quality}")
    if isinstance(img, torch.Tensor):
        arr = img.detach().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        out = jpeg_compress(arr[:, :, 0] if arr.shape[2] == 1 else arr, quality)
        out = out[:, :, None] if out.ndim == 2 else out
        return torch.from_numpy(out).permute(2, 0, 1).to(img.device, torch.float32).div(255)
    if img.dtype != np.uint8:
        raise TypeError(f"jpeg_compress: numpy images must be uint8, got {img.dtype}")
    squeeze = img.ndim == 3 and img.shape[2] == 1
    buf = io.BytesIO()
    PILImage.fromarray(img[:, :, 0] if squeeze else img).save(buf, format="JPEG", quality=quality)
    out = np.array(PILImage.open(io.BytesIO(buf.getvalue())))  # writable, for torch.from_numpy
    return out[:, :, None] if squeeze else out
