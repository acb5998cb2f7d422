"""Seamless tiled upscaling: overlapping tiles blended with feathered weights, assembled on the CPU.

Tiles overlap their neighbours; in each overlap the two predictions are mixed with linear ramps
that sum to one, and a quarter of the overlap at each tile's own edge (where the model saw
padding instead of context) gets no weight at all. Blending instead of cropping is what removes
seams. Tiles are written into an output tensor on the CPU in the output dtype (e.g. uint8); only
the strips that neighbouring tiles share are held as float until complete, the input is read
tile by tile, and only one batch of tiles (of at most `MAX_CALL_PIXELS` input pixels) lives on
the accelerator. So apart from the input and output images themselves, peak memory does not
grow with the image size.
"""
from __future__ import annotations

import functools
import gc
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from torch_sr.errors import TorchSRError

MEMINFO = Path("/proc/meminfo")
MEMORY_FRACTION = {"cuda": 0.7, "cpu": 0.5}  # share of the free memory the model may use
FALLBACK_MEMORY = 2 << 30  # when the free memory cannot be read at all
MIN_AUTO_TILE = 64
MAX_TILE_BATCH = 8
# Input pixels per model call (one tile, or a batch of small ones). Enough work to keep a GPU or
# the CPU busy; larger calls are no faster and would make peak memory grow with the image.
MAX_CALL_PIXELS = 512 * 512
ACTIVATION_SAFETY = 3  # peak memory / largest (inputs + output) of one layer, with headroom
MEASURED_SAFETY = 1.25  # headroom over a measured (CUDA) per-pixel slope
PROBE_SIDE = {"cuda": 64, "cpu": 32}  # input side of the memory probe (CUDA measures it and twice it)

# cuDNN/cuBLAS allocation failures ("CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED") and
# CUDA's own ("CUDA error: out of memory") arrive as plain RuntimeErrors.
OUT_OF_MEMORY_MESSAGE = re.compile(r"out of memory|STATUS_ALLOC_FAILED|failed to allocate", re.IGNORECASE)

INT_PEAKS = {torch.uint8: 255, torch.uint16: 65535}

Span = tuple[int, int]


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> list[Span]:
    """`(start, end)` of tiles covering `[0, length)`, each about `tile` long.

    The axis is cut into equal cores at multiples of `align` (so models that fold pixels into
    channels, `size_multiple`, see the same pixel grid as on the whole image), and every tile
    reaches `overlap / 2` (rounded up to `align`) past its cuts: neighbours share `overlap` pixels
    centred on each cut, and only neighbours overlap, which keeps the blending weights a partition
    of unity. Tiles are at most `tile + 2 * align` long (tiles under 16 pixels
    may grow to 24, to keep that).
    """
    if length <= tile:
        return [(0, length)]
    margin = math.ceil(overlap / 2 / align) * align
    core = max(align, tile - 2 * margin)
    n = 2 if length <= 2 * (tile - margin) else math.ceil(length / core)
    # Cores of at least 2 * margin + align: rounded to `align`, consecutive cuts then stay 2 * margin
    # apart, so a tile never reaches the tile after its neighbour (small tiles grow a little instead).
    n = min(n, max(2, length // (2 * margin + align)))
    cuts = sorted({round(k * length / n / align) * align for k in range(1, n)} - {0, length})
    bounds = [0, *cuts, length]
    return [(max(0, a - margin), min(length, b + margin)) for a, b in zip(bounds, bounds[1:])]


def tile_grid(h: int, w: int, tile: int | None, overlap: int, align: int = 1) -> tuple[list[Span], list[Span]]:
    """Row and column spans of the tiles; `tile=None` is one tile. The overlap is capped at tile / 4."""
    if tile is None:
        return [(0, h)], [(0, w)]
    tile = max(align, tile // align * align)
    overlap = max(0, min(overlap, tile // 4))
    return tile_spans(h, tile, overlap, align), tile_spans(w, tile, overlap, align)


def ramp_weights(spans: list[Span], k: int, scale: int) -> torch.Tensor:
    """Blending weights of tile `k` along one axis, one per output pixel.

    In the overlap `[a0, a1)` with a neighbour the weight ramps linearly over the middle half and is
    0 (or 1) over the outer quarters, so neighbouring weights add up to exactly one everywhere.
    Without overlap the tiles simply abut.
    """
    start, end = spans[k]
    u = (torch.arange((end - start) * scale, dtype=torch.float64) + 0.5) / scale + start  # LR coordinate
    w = torch.ones_like(u)
    if k > 0 and spans[k - 1][1] > start:
        a0, a1 = start, spans[k - 1][1]
        lo, hi = a0 + (a1 - a0) / 4, a1 - (a1 - a0) / 4
        w *= ((u - lo) / (hi - lo)).clamp(0, 1)
    if k < len(spans) - 1 and end > spans[k + 1][0]:
        a0, a1 = spans[k + 1][0], end
        lo, hi = a0 + (a1 - a0) / 4, a1 - (a1 - a0) / 4
        w *= ((hi - u) / (hi - lo)).clamp(0, 1)
    return w.float()


def quantize(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[0, 1] floats -> `dtype`: clamped floats, or rounded 8/16-bit integers."""
    if dtype.is_floating_point:
        return x.clamp(0, 1).to(dtype)
    peak = INT_PEAKS.get(dtype)
    if peak is None:
        raise ValueError(f"unsupported output dtype {dtype}; use a float type, uint8 or uint16")
    return x.mul(peak).round_().clamp_(0, peak).to(dtype)


def to_unit_float(x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixels as float32 in [0, 1] on `device`: uint8/uint16 are divided by their peak, floats kept."""
    peak = INT_PEAKS.get(x.dtype)
    x = x.to(device, torch.float32)
    return x if peak is None else x.div_(peak)


def _same_width_groups(spans: list[Span], max_batch: int) -> list[list[int]]:
    """Consecutive tile indices of equal width, at most `max_batch` per group (one model call each)."""
    groups: list[list[int]] = []
    for j, (x0, x1) in enumerate(spans):
        last = groups[-1] if groups else None
        if last and len(last) < max_batch and spans[last[0]][1] - spans[last[0]][0] == x1 - x0:
            last.append(j)
        else:
            groups.append([j])
    return groups


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    scale: int,
    tile: int | None,
    overlap: int = 0,
    *,
    device: torch.device | str = "cpu",
    out_dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    align: int = 1,
    max_batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Apply `fn` (an `(B, C, h, w) -> (B, C', h*s, w*s)` float function) over tiles of `lr`.

    `lr` is `(N, C, h, w)` on any device, float in [0, 1] or uint8/uint16 (each tile is scaled
    to [0, 1] on its own, so the image is never copied whole as float); each tile batch is moved
    to `device` as float32. `tile=None` processes the image in one piece. The overlap is capped at
    a quarter of the tile. Returns `(N, C', h*s, w*s)` on the CPU in `out_dtype` (values clamped
    to [0, 1], or rounded to the integer range), stored channels-last if asked (so
    `.permute(0, 2, 3, 1).numpy()` is free). `progress(k)` is called after each batch of `k` tiles.
    """
    n, _, h, w = lr.shape
    ys, xs = tile_grid(h, w, tile, overlap, align)
    device = torch.device(device)
    wx = [ramp_weights(xs, j, scale).to(device) for j in range(len(xs))]
    asm: _Assembly | None = None
    for r, (y0, y1) in enumerate(ys):
        wy = ramp_weights(ys, r, scale).to(device)
        for group in _same_width_groups(xs, max_batch):
            x = torch.cat([to_unit_float(lr[:, :, y0:y1, xs[j][0] : xs[j][1]], device) for j in group])
            pred = fn(x)
            th, tw = (y1 - y0) * scale, (xs[group[0]][1] - xs[group[0]][0]) * scale
            if pred.dim() != 4 or pred.shape[0] != x.shape[0] or pred.shape[-2:] != (th, tw):
                raise TorchSRError(
                    f"the model turned a {tuple(x.shape)} input into {tuple(pred.shape)}, expected "
                    f"(..., {th}, {tw}) for its scale x{scale}"
                )
            del x
            if asm is None:
                asm = _Assembly((n, pred.shape[1], h * scale, w * scale), ys, xs, scale, out_dtype, channels_last)
            for i, j in enumerate(group):
                p = pred[i * n : (i + 1) * n].float()
                if len(ys) > 1 or len(xs) > 1:
                    p = p * (wy[:, None] * wx[j][None, :])
                asm.add(r, j, p.cpu())
            del pred
            if progress is not None:
                progress(len(group))
    assert asm is not None
    return asm.out


class _Assembly:
    """Writes weighted tiles into the output; only the overlaps are summed in float.

    A pixel covered by one tile has weight 1 and is quantised straight into the output. The
    strips that neighbouring tiles share are accumulated in float32 and written once complete: the
    horizontal strips between two rows of tiles (`above`, `below`) and the vertical strip between
    two tiles of a row (`left`, started by the left tile, finished by the right one). So the float
    memory is a few overlap strips, not a band of tiles as wide as the image.
    """

    def __init__(self, shape, ys: list[Span], xs: list[Span], scale: int, dtype: torch.dtype, channels_last: bool):
        n, c, hh, ww = shape
        out = torch.empty((n, hh, ww, c) if channels_last else shape, dtype=dtype)
        self.out = out.permute(0, 3, 1, 2) if channels_last else out
        self.ys, self.xs, self.scale, self.dtype = ys, xs, scale, dtype
        self.above: torch.Tensor | None = None  # rows shared with the previous row of tiles
        self.below: torch.Tensor | None = None  # rows shared with the next row of tiles
        self.left: torch.Tensor | None = None  # columns shared with the previous tile in this row

    def _cuts(self, spans: list[Span], k: int) -> tuple[int, int, int, int]:
        """Output coordinates of span k: its start, the end of what it shares with k-1, the start of
        what it shares with k+1, its end."""
        a, b = spans[k]
        lo = spans[k - 1][1] if k > 0 else a
        hi = spans[k + 1][0] if k + 1 < len(spans) else b
        s = self.scale
        return a * s, max(a, lo) * s, min(b, hi) * s, b * s

    def add(self, r: int, j: int, p: torch.Tensor) -> None:
        """Add tile (row `r`, column `j`), weighted, in raster order."""
        y0, ym0, ym1, y1 = self._cuts(self.ys, r)
        x0, xm0, xm1, x1 = self._cuts(self.xs, j)
        n, c, ww = self.out.shape[0], self.out.shape[1], self.out.shape[3]
        if j == 0:
            self.below = p.new_zeros((n, c, y1 - ym1, ww))
        if ym0 > y0:
            self.above[:, :, :, x0:x1] += p[:, :, : ym0 - y0]
        self.below[:, :, :, x0:x1] += p[:, :, ym1 - y0 :]
        middle = p[:, :, ym0 - y0 : ym1 - y0]
        if j > 0:
            self.left += middle[:, :, :, : xm0 - x0]
            self._write(ym0, ym1, x0, xm0, self.left)
        self._write(ym0, ym1, xm0, xm1, middle[:, :, :, xm0 - x0 : xm1 - x0])
        self.left = middle[:, :, :, xm1 - x0 :].clone()
        if j == len(self.xs) - 1:  # the row of tiles is done: so is the strip it shared with the row above
            if ym0 > y0:
                self._write(y0, ym0, 0, ww, self.above)
            self.above, self.below, self.left = self.below, None, None

    def _write(self, y0: int, y1: int, x0: int, x1: int, values: torch.Tensor) -> None:
        if y1 > y0 and x1 > x0:
            self.out[:, :, y0:y1, x0:x1] = quantize(values, self.dtype)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error means the device ran out of memory.

    CUDA's allocator raises `torch.OutOfMemoryError`; cuDNN and cuBLAS failing to allocate their
    workspaces or handles arrive as a plain `RuntimeError` that only says so in its message.
    """
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and OUT_OF_MEMORY_MESSAGE.search(str(error)) is not None
    )


def release_memory(device: torch.device) -> None:
    """Free what a failed attempt left: unreachable tensors, then (CUDA) the allocator's cached blocks.

    Call it outside the `except` block: while the exception is handled, its traceback keeps the
    failed attempt's tensors alive.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def available_memory(device: torch.device) -> int:
    """Bytes free for tensors: CUDA free memory (plus PyTorch's unused cache), else free RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY


def memory_budget(device: torch.device, reserved: int = 0) -> float:
    """Bytes the model's activations may use; `reserved` (e.g. the output image) counts on the CPU."""
    free = available_memory(device)
    if device.type == "cuda":
        return free * MEMORY_FRACTION["cuda"]
    return max(free * MEMORY_FRACTION["cpu"] - reserved, free * 0.1)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs must have: that of its weights (a `model.half()` takes float16)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def activation_bytes_per_pixel(
    model: nn.Module, in_channels: int, device: torch.device, align: int = 1, dtype: torch.dtype | None = None
) -> float:
    """Estimate the memory per input pixel of one forward pass in autocast `dtype` (None: float32).

    On CUDA the allocator's peak is measured at two probe sizes and the slope taken
    (`measured_bytes_per_pixel`), which leaves out what does not grow with the tile (cuDNN
    workspaces, library handles). Elsewhere forward hooks record the largest inputs + output of any
    layer (with autograd on, so that no fused inference path skips the layers); the peak of a
    feed-forward network is a small multiple of that. Either way the probe runs in the precision
    the tiles will run in: half precision needs about half the memory.
    """
    side = math.ceil(PROBE_SIDE["cuda" if device.type == "cuda" else "cpu"] / align) * align
    if device.type == "cuda":
        probe = functools.partial(_cuda_peak, model, in_channels, device, dtype)
        return measured_bytes_per_pixel(probe, [side, 2 * side])
    x = torch.zeros(1, in_channels, side, side, device=device, dtype=model_dtype(model))
    peak = 0

    def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
        nonlocal peak
        tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
        peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.enable_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return ACTIVATION_SAFETY * peak / side**2


def measured_bytes_per_pixel(peak_bytes: Callable[[int], float], sides: list[int]) -> float:
    """Memory per input pixel from the peaks `peak_bytes(side)` of square probes of two `sides`.

    The slope between the two leaves out the fixed part of a peak; `MEASURED_SAFETY` covers the
    allocator's rounding and fragmentation. Should the slope not be positive (a fixed part that
    shrank), the larger probe's whole peak per pixel is used instead.
    """
    small, large = sides
    p_small, p_large = peak_bytes(small), peak_bytes(large)
    slope = (p_large - p_small) / (large**2 - small**2)
    if slope <= 0:
        slope = p_large / large**2
    return MEASURED_SAFETY * slope


def _cuda_peak(model: nn.Module, in_channels: int, device: torch.device, dtype: torch.dtype | None, side: int) -> int:
    """Peak CUDA memory of one forward pass on a `side` x `side` input, its input included.

    The pass runs once before it is measured, so that cuDNN's benchmarking (which tries
    algorithms with large workspaces once per shape) is not what gets measured.
    """

    def run() -> None:
        x = torch.zeros(1, in_channels, side, side, device=device, dtype=model_dtype(model))
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x)

    run()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def call_pixels(per_pixel: float, budget: float) -> float:
    """Input pixels one model call may take: what `budget` bytes hold, at most `MAX_CALL_PIXELS`."""
    return min(budget / per_pixel, MAX_CALL_PIXELS)


def choose_tile(
    h: int, w: int, images: int, per_pixel: float, budget: float, overlap: int = 0, align: int = 1
) -> int | None:
    """Tile side for `images` images of `h` x `w` pixels, or None when they fit in one piece.

    Images larger than `MAX_CALL_PIXELS` are tiled even when memory would hold them, which keeps
    the peak memory of any image size near that of a `MAX_CALL_PIXELS` image.
    """
    pixels = call_pixels(per_pixel, budget)
    if images * h * w <= pixels:
        return None
    side = max(int(math.sqrt(pixels / images)), MIN_AUTO_TILE, 4 * overlap)
    return max(align, side // align * align)


def tiles_per_batch(tile: int, images: int, per_pixel: float, budget: float) -> int:
    """How many tiles (of `images` images each) one model call may take."""
    return max(1, min(MAX_TILE_BATCH, int(call_pixels(per_pixel, budget) // (images * tile * tile))))
