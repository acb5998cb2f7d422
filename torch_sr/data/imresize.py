"""MATLAB-compatible `imresize` (bicubic): how every published SR benchmark made its LR images.

PIL's and torch's bicubic differ from MATLAB's (kernel a = -0.75 vs -0.5, no antialiasing, other
boundary handling) and move benchmark PSNR by tenths of a dB, so the library makes LR images only
with this function. It follows MATLAB's `imresize.m` step by step:

- cubic kernel with a = -0.5, widened by 1/scale when downscaling with antialiasing;
- output pixel x (1-based) samples input position u = x/scale + (1 - 1/scale)/2;
- out-of-range taps are mirrored (symmetric padding: ... 2 1 | 1 2 ... n | n n-1 ...);
- weights of each output pixel are normalised to sum to 1;
- output size ceil(scale * size) when a scale is given; scale = out/in per axis when a size is given;
- the axis with the smaller scale is resized first (rows first on a tie), and for integer images the
  intermediate result is rounded and saturated to the integer type, as MATLAB's `imresizemex` does.

Each axis is one matmul with the dense `(out, in)` weight matrix (BLAS makes that the fastest way for
all but huge images), or, for huge axes, a gather of the `P` taps (P = ceil(4 / scale) + 2 when
downscaling) and a weighted sum; batched over any leading dimensions, on the input's device.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

Array = torch.Tensor | np.ndarray
DENSE_MAX = 1 << 24  # axes whose (out, in) matrix has at most this many entries resize by one matmul
UPSCALE_REACH = 3  # input pixels on each side an integer upscale reads (its 6 taps span k-3 .. k+3)
_SIZE_EPS = 1e-9  # (1/s) * (s*k) may come out a hair above k in floating point: never round that up


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`), support [-2, 2]."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@functools.lru_cache(maxsize=64)
def contributions(in_length: int, out_length: int, scale: float, antialiasing: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights `(out_length, P)` (float64) and 0-based input indices `(out_length, P)` of one axis.

    A transcription of MATLAB's `contributions`: same kernel, same sample positions, same mirrored
    boundary, same normalisation.
    """
    kernel_width = 4.0
    antialias = antialiasing and scale < 1
    if antialias:
        kernel_width /= scale
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based, may be out of range
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights = weights / weights.sum(1, keepdim=True)
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    indices = mirror[(indices.long() - 1) % (2 * in_length)]
    keep = weights.ne(0).any(0)  # MATLAB drops all-zero tap columns; harmless, but fewer taps is faster
    return weights[:, keep].contiguous(), indices[:, keep].contiguous()


def output_length(size: int, scale: float) -> int:
    """MATLAB's output size rule, ceil(scale * size), immune to float error in scales like 1/3."""
    return max(1, math.ceil(scale * size - _SIZE_EPS))


@functools.lru_cache(maxsize=64)
def resize_matrix(in_length: int, out_length: int, scale: float, antialiasing: bool) -> torch.Tensor:
    """The same weights as a dense `(out_length, in_length)` float64 matrix (mirrored taps summed)."""
    weights, indices = contributions(in_length, out_length, scale, antialiasing)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.scatter_add_(1, indices, weights)


def _resize_axis(x: torch.Tensor, dim: int, out_length: int, scale: float, antialiasing: bool) -> torch.Tensor:
    if x.shape[dim] * out_length <= DENSE_MAX:  # one BLAS matmul is faster than P gathers on the CPU
        matrix = resize_matrix(x.shape[dim], out_length, scale, antialiasing).to(device=x.device, dtype=x.dtype)
        return torch.matmul(matrix, x) if dim == -2 else torch.matmul(x, matrix.T)
    weights, indices = contributions(x.shape[dim], out_length, scale, antialiasing)
    weights = weights.to(device=x.device, dtype=x.dtype)
    indices = indices.to(x.device)
    shape = [1] * x.dim()
    shape[dim] = out_length
    out = None
    for p in range(weights.shape[1]):  # P small gathers: O(P * pixels) time, O(pixels) extra memory
        term = x.index_select(dim, indices[:, p]) * weights[:, p].view(shape)
        out = term if out is None else out.add_(term)
    return out


def _resize_tensor(
    x: torch.Tensor, size: tuple[int, int], scales: tuple[float, float], antialiasing: bool, top: int | None
) -> torch.Tensor:
    """Resize both axes; `top` (255 or 65535) marks integer images, rounded after each axis."""
    work = torch.float64 if top else (x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32)
    y = x.to(work)
    order = (-2, -1) if scales[0] <= scales[1] else (-1, -2)  # smaller scale first, rows on a tie
    for dim in order:
        axis = 0 if dim == -2 else 1
        y = _resize_axis(y, dim, size[axis], scales[axis], antialiasing)
        if top:  # MATLAB's conversion to an integer class: round half away from zero, saturate
            y = torch.floor(y.clamp_(0, top) + 0.5)
    return y.to(x.dtype)


@functools.lru_cache(maxsize=16)
def _phase_kernels(scale: int) -> torch.Tensor:
    """`(scale, 2 * UPSCALE_REACH + 1)` float64: the weights output phase q gives input pixels k-3 .. k+3."""
    reach, n = UPSCALE_REACH, 2 * UPSCALE_REACH + 1
    matrix = resize_matrix(n, n * scale, float(scale), False)  # the middle pixel's taps stay inside
    return matrix[reach * scale : (reach + 1) * scale].clone()


def upscale_integer(x: torch.Tensor, scale: int) -> torch.Tensor:
    """`imresize(x, scale)` for a float `(N, C, H, W)` tensor and an integer `scale` >= 2, as convolutions.

    Upscaling by an integer, MATLAB's weights depend only on an output pixel's phase (its index
    mod `scale`), so each axis is a convolution with `scale` fixed 7-tap kernels over the
    mirror-padded input, interleaved. The same numbers as `imresize` (to float32 rounding), but the
    graph holds no size-dependent constants: it traces for ONNX export with any input size.
    """
    n, c, h, w = x.shape
    if min(h, w) < UPSCALE_REACH:  # the mirror wraps more than once: MATLAB's general rule
        return imresize(x, scale=scale)
    kernels = _phase_kernels(scale).to(device=x.device, dtype=x.dtype)
    r = UPSCALE_REACH
    y = x.reshape(n * c, 1, h, w)
    y = torch.cat([y[:, :, :r].flip(2), y, y[:, :, -r:].flip(2)], 2)  # symmetric padding (MATLAB's)
    y = torch.nn.functional.conv2d(y, kernels[:, None, :, None])  # (NC, s, H, W): phase q of each row
    y = y.permute(0, 2, 1, 3).reshape(n * c, 1, h * scale, w)
    y = torch.cat([y[..., :r].flip(3), y, y[..., -r:].flip(3)], 3)
    y = torch.nn.functional.conv2d(y, kernels[:, None, None, :])  # (NC, s, Hs, W)
    return y.permute(0, 2, 3, 1).reshape(n, c, h * scale, w * scale)


def imresize(
    img: Array,
    scale: float | None = None,
    output_size: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> Array:
    """Resize like MATLAB's `imresize(img, scale)` / `imresize(img, [h w])` with the bicubic method.

    Tensors: `(..., H, W)`, any leading dimensions (batch, channels), any device; float tensors stay
    in their dtype (float32 math), uint8 tensors are computed in float64 and rounded as MATLAB does.
    Numpy arrays: `HW` or `HWC`; `uint8`/`uint16` give the same type, rounded and saturated as
    MATLAB's `imresize` returns it; float arrays stay float (values are not clipped).
    """
    if (scale is None) == (output_size is None):
        raise ValueError("imresize: give exactly one of scale or output_size")
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"imresize: numpy images must be HW or HWC, got shape {img.shape}")
        dtype = img.dtype
        if dtype not in (np.uint8, np.uint16) and not np.issubdtype(dtype, np.floating):
            raise TypeError(f"imresize: unsupported numpy dtype {dtype}; use uint8, uint16 or float")
        arr = img.astype(np.int32) if dtype == np.uint16 else np.ascontiguousarray(img)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # read-only arrays: torch warns
        t = t.permute(2, 0, 1) if img.ndim == 3 else t
        top = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(np.dtype(dtype))
        out = _resize(t, scale, output_size, antialiasing, top)
        out = out.permute(1, 2, 0) if img.ndim == 3 else out
        return out.numpy().astype(dtype, copy=False)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"imresize: expected a torch.Tensor or numpy array, got {type(img).__name__}")
    if not img.is_floating_point() and img.dtype != torch.uint8:
        raise TypeError(f"imresize: unsupported tensor dtype {img.dtype}; use a float or uint8 tensor")
    return _resize(img, scale, output_size, antialiasing, None if img.is_floating_point() else 255)


def _resize(
    img: torch.Tensor, scale: float | None, output_size: tuple[int, int] | None, antialiasing: bool, top: int | None
) -> torch.Tensor:
    if img.dim() < 2:
        raise ValueError(f"imresize: tensors must be (..., H, W), got shape {tuple(img.shape)}")
    h, w = img.shape[-2:]
    if output_size is not None:
        size = (int(output_size[0]), int(output_size[1]))
        if min(size) < 1:
            raise ValueError(f"imresize: output_size must be positive, got {output_size}")
        scales = (size[0] / h, size[1] / w)
    else:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        size = (output_length(h, scale), output_length(w, scale))
        scales = (float(scale), float(scale))
    return _resize_tensor(img, size, scales, antialiasing, top)
