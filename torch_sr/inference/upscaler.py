"""`Upscaler`: run a generator over whole images of any size, layout and bit depth.

It owns everything between "a trained model" and "an upscaled image": tiling with blended
overlaps, padding to the model's `size_multiple`, x8 self-ensemble, mixed precision, and images
whose channels differ from the model's (grey on an RGB model, RGB on a Y-only model, alpha).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs.description import generator_info
from torch_sr.device import autocast_dtype, make_current, resolve_device
from torch_sr.errors import TorchSRError
from torch_sr.inference import tiling
from torch_sr.inference.channels import confine_alpha, fill_transparent
from torch_sr.color import rgb_to_gray, rgb_to_ycbcr, ycbcr_to_rgb
from torch_sr.inference.defaults import DEFAULT_TILE_OVERLAP
from torch_sr.progress import progress_bar

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
_TORCH_DTYPES = {np.dtype(np.uint8): torch.uint8, np.dtype(np.uint16): torch.uint16}


class NonFiniteOutputError(TorchSRError):
    """The model produced NaN or inf (broken weights): the input fails instead of becoming a black image."""


class Upscaler:
    """Upscale tensors or arrays with `model`; its `info` (`GeneratorInfo`) decides the output size.

    `tile="auto"` tiles an image larger than `tiling.MAX_CALL_PIXELS` (512x512 LR pixels), or one that
    would not fit in the device's free memory, with a tile size derived from both (so peak memory
    stays that of a 512x512 image); an int forces tiles of that many LR pixels; None never tiles.
    `progress=True` shows a bar of the tiles of each image (with the time left) on a terminal.
    `precision` "fp16"/"bf16" runs under autocast on CUDA, and "bf16" on the CPU too unless that
    CPU is known to emulate bfloat16 (slower than float32 there; natively about twice as fast,
    docs/benchmarks.md): `torch_sr.device.autocast_dtype` decides. fp16 on the CPU, and bf16 on an
    emulating one, are ignored with a warning unless `force_autocast=True` (for tests and experiments).
    A half-precision batch that comes out non-finite is recomputed in float32. An indexed CUDA
    device (`cuda:1`) becomes the current device (`torch_sr.device.make_current`).
    A model with a faster inference path (`RRDBNet.optimize_for_inference`) gets it switched on
    where it pays, on its own terms.
    """

    def __init__(
        self,
        model: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        tile: int | None | str = "auto",
        tile_overlap: int = DEFAULT_TILE_OVERLAP,
        tta: bool = False,
        progress: bool = False,
        *,
        force_autocast: bool = False,
    ):
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        make_current(self.device)
        if precision not in PRECISIONS:
            raise TorchSRError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if not (tile is None or tile == "auto" or (isinstance(tile, int) and not isinstance(tile, bool) and tile > 0)):
            raise TorchSRError(f"tile must be a positive number of pixels, 'auto' or None, got {tile!r}")
        if tile_overlap < 0:
            raise TorchSRError(f"tile overlap must be >= 0 pixels, got {tile_overlap}")
        try:
            info = generator_info(model)
        except TypeError as e:
            raise TorchSRError(f"{e}; cannot tell the output size") from None
        if info.scale < 1 or info.size_multiple < 1:
            raise TorchSRError(f"{type(model).__name__}.info: scale and size_multiple must be >= 1, got {info}")
        self.model = model.to(self.device).eval()
        self.model_dtype = tiling.model_dtype(model)  # a model.half() computes in float16 itself
        if hasattr(model, "optimize_for_inference"):
            model.optimize_for_inference()
        self.scale, self.model_channels, self.size_multiple = info.scale, info.in_channels, info.size_multiple
        self.tile, self.tile_overlap, self.tta, self.progress = tile, tile_overlap, tta, progress
        self.autocast_dtype = PRECISIONS[precision]
        if self.autocast_dtype is not None and self.device.type == "cpu" and not force_autocast:
            self.autocast_dtype = autocast_dtype(self.device, precision)
            if self.autocast_dtype is None and precision == "fp16":
                warnings.warn("fp16 needs a GPU; running in float32 on the CPU (bf16 runs on CPUs with "
                              "avx512_bf16 or amx_bf16)", stacklevel=2)  # fmt: skip
            elif self.autocast_dtype is None:
                warnings.warn("bf16 needs a GPU or a CPU with avx512_bf16 or amx_bf16 (emulated, it is slower than "
                              "float32); running in float32 on the CPU", stacklevel=2)  # fmt: skip
        if self.autocast_dtype == torch.float16 and not info.supports_half:
            warnings.warn(f"{type(model).__name__} does not support float16; running in float32", stacklevel=2)
            self.autocast_dtype = None
        self._warned_nonfinite = False
        self._bytes_per_pixel: float | None = None

    # -- public API -------------------------------------------------------------------------------

    def upscale_tensor(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) float in [0,1], any device -> (N, C, h*s, w*s) float32 on the CPU, clamped to [0,1]."""
        if lr.dim() != 4 or not lr.is_floating_point():
            raise TorchSRError(f"expected a float (N, C, H, W) tensor, got {lr.dtype} of shape {tuple(lr.shape)}")
        return self._upscale(lr.float(), torch.float32, channels_last=False)

    def upscale_array(self, img: np.ndarray) -> np.ndarray:
        """HW or HWC, uint8 or uint16 (or float) -> same layout and dtype, s times larger."""
        if img.ndim not in (2, 3) or (img.ndim == 3 and not 1 <= img.shape[2] <= 4):
            raise TorchSRError(f"expected an HW or HWC image with 1-4 channels, got shape {img.shape}")
        if img.dtype in _TORCH_DTYPES:
            out_dtype = _TORCH_DTYPES[img.dtype]
        elif np.issubdtype(img.dtype, np.floating):
            out_dtype = torch.float32
        else:
            raise TorchSRError(f"unsupported image dtype {img.dtype}; use uint8, uint16 or float in [0, 1]")
        hwc = img[:, :, None] if img.ndim == 2 else img
        # Integer pixels stay integers: the tiler scales each tile to [0, 1], never the whole image.
        lr = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1)[None]
        lr = lr if lr.dtype in tiling.INT_PEAKS else lr.float()
        out = self._upscale(lr, out_dtype, channels_last=True).permute(0, 2, 3, 1)[0].numpy()
        out = out[:, :, 0] if img.ndim == 2 else out
        return out.astype(img.dtype, copy=False)

    # -- tiling and memory ------------------------------------------------------------------------

    def _upscale(self, lr: torch.Tensor, out_dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
        n, c, h, w = lr.shape
        if c not in (1, 2, 3, 4):
            raise TorchSRError(f"images must have 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, got {c}")
        if not n * h * w:
            raise TorchSRError(f"the image is empty: {w}x{h} pixels, batch of {n}")
        if lr.is_floating_point() and not torch.isfinite(lr).all():
            raise TorchSRError("the input holds NaN or inf values; pixels must be finite, in [0, 1]")
        alpha_value = None
        if c in (2, 4):
            alpha = tiling.to_unit_float(lr[:, -1:], lr.device)
            if alpha.min() == alpha.max():  # opaque (or uniformly translucent): nothing to upscale
                alpha_value = float(alpha.min())
            elif alpha.min() == 0:
                lr = torch.cat([fill_transparent(tiling.to_unit_float(lr[:, :-1], lr.device), alpha), alpha], 1)
        out_bytes = n * c * h * w * self.scale**2 * torch.empty(0, dtype=out_dtype).element_size()
        tile = self.tile
        if tile == "auto":
            budget = tiling.memory_budget(self.device, reserved=out_bytes)
            tile = tiling.choose_tile(h, w, n, self._per_pixel(), budget, self.tile_overlap, self.size_multiple)
        batching = True
        while True:
            try:
                return self._run_tiles(lr, tile, alpha_value, out_dtype, channels_last, out_bytes, batching)
            except RuntimeError as e:  # torch.OutOfMemoryError is one
                if not tiling.is_out_of_memory(e):
                    raise
            # Out of memory. Here, past the `except`, the traceback and the tile tensors its frames
            # held are gone, so the cached memory they used can be released before the retry. The
            # memory estimate was wrong: the retry takes smaller tiles, one per call.
            tiling.release_memory(self.device)
            batching = False
            smaller = max(self.size_multiple, (tile or max(h, w)) // 2)
            if self.tile != "auto" or smaller < tiling.MIN_AUTO_TILE:
                raise TorchSRError(
                    f"out of memory on {self.device} with tile {tile or 'none'}; use a smaller tile "
                    "(--tile) or another device"
                )
            warnings.warn(f"out of memory with tile {tile or 'none'}; retrying with tile {smaller}", stacklevel=3)
            tile = smaller

    def _run_tiles(self, lr, tile, alpha_value, out_dtype, channels_last, out_bytes, batching=True) -> torch.Tensor:
        n, _, h, w = lr.shape
        batch = 1
        if tile is not None and batching:
            budget = tiling.memory_budget(self.device, reserved=out_bytes)
            batch = tiling.tiles_per_batch(tile, n, self._per_pixel(), budget)
        bar = None
        if self.progress:
            ys, xs = tiling.tile_grid(h, w, tile, self.tile_overlap, self.size_multiple)
            count = len(ys) * len(xs)
            bar = progress_bar(count, unit="tile", enabled=count > 1, leave=False)
        try:
            with torch.inference_mode():
                return tiling.upscale_tiled(
                    lambda x: self._forward(x, alpha_value),
                    lr,
                    self.scale,
                    tile,
                    self.tile_overlap,
                    device=self.device,
                    out_dtype=out_dtype,
                    channels_last=channels_last,
                    align=self.size_multiple,
                    max_batch=batch,
                    progress=bar.update if bar is not None else None,
                )
        finally:
            if bar is not None:
                bar.close()

    def _per_pixel(self) -> float:
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = tiling.activation_bytes_per_pixel(
                self.model, self.model_channels, self.device, self.size_multiple, self.autocast_dtype
            )
        return self._bytes_per_pixel

    # -- one tile batch ---------------------------------------------------------------------------

    def _forward(self, x: torch.Tensor, alpha_value: float | None) -> torch.Tensor:
        if not self.tta:
            return self._forward_channels(x, alpha_value)
        # x8 self-ensemble: the 4 flips of the tile and of its transpose, mapped back and averaged.
        total = None
        for transpose in (False, True):
            xt = x.transpose(-2, -1) if transpose else x
            for dims in ((), (-1,), (-2,), (-2, -1)):
                y = self._forward_channels(xt.flip(dims) if dims else xt, alpha_value)
                y = y.flip(dims) if dims else y
                y = y.transpose(-2, -1) if transpose else y
                total = y if total is None else total + y
        return total / 8

    def _forward_channels(self, x: torch.Tensor, alpha_value: float | None) -> torch.Tensor:
        """Image channels in, the same channels out: colour and alpha go through the model apart."""
        if x.shape[1] not in (2, 4):
            return self._adapt(x)
        colour = self._adapt(x[:, :-1])
        if alpha_value is None:
            alpha = confine_alpha(self._adapt(x[:, -1:]), x[:, -1:], self.scale)
        else:
            alpha = colour.new_full((colour.shape[0], 1, *colour.shape[-2:]), alpha_value)
        return torch.cat([colour, alpha], 1)

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        """Grey or RGB in, same out, whatever the model's channel count (1 or 3)."""
        c, m = x.shape[1], self.model_channels
        if c == m:
            return self._model(x)
        if c == 1 and m == 3:  # grey on an RGB model: replicate, then back to grey
            return rgb_to_gray(self._model(x.expand(-1, 3, -1, -1)))
        if c == 3 and m == 1:  # Y-only model: the model upscales Y, bicubic the chroma
            ycbcr = rgb_to_ycbcr(x)
            y = self._model(ycbcr[:, :1])
            chroma = F.interpolate(ycbcr[:, 1:], scale_factor=self.scale, mode="bicubic", align_corners=False)
            return ycbcr_to_rgb(torch.cat([y, chroma], 1))
        raise TorchSRError(f"cannot apply a {m}-channel model to a {c}-channel image")

    def _model(self, x: torch.Tensor) -> torch.Tensor:
        """The model itself, padded by reflection to its size multiple, in the chosen precision."""
        h, w = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        y = None
        x = x.to(self.model_dtype)
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                y = self.model(x).float()
            if not torch.isfinite(y).all():
                if not self._warned_nonfinite:
                    warnings.warn("half precision gave non-finite values; recomputing those tiles in float32")
                    self._warned_nonfinite = True
                y = None
        if y is None:
            y = self.model(x).float()
            if not torch.isfinite(y).all():
                if self.model_dtype != torch.float32:
                    raise NonFiniteOutputError(
                        f"the model's output is not finite (NaN or inf) in its own {self.model_dtype} weights: "
                        "give the float32 model (model.float()) with precision='fp16' or 'bf16', which recomputes "
                        "such tiles in float32"
                    )
                raise NonFiniteOutputError("the model's output is not finite (NaN or inf): its weights are broken")
        return y[..., : h * self.scale, : w * self.scale]
