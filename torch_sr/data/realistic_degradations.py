"""Realistic training inputs: Real-ESRGAN's high-order degradation model, and simpler JPEG / noise presets.

A real photo's LR is not a clean bicubic downscale: it was blurred by optics, resized by some
program, noisy, and JPEG-compressed, often more than once. `Degradation` turns a batch of HR crops
(and their clean bicubic LR) into such inputs on the training device, image by image, each with
its own draws, as configured by a `DegradationConfig` (see its keys and presets).

Randomness comes only from the `torch.Generator` passed in (drawn on the CPU, so CPU and GPU give
the same batch); the trainer seeds one per iteration, so a resumed run degrades identically. JPEG is
the real codec (Pillow: what a saved JPEG at that quality decodes to), not a differentiable
approximation. Unlike Real-ESRGAN, resize factors are drawn per image rather than per batch, so
no pool of past pairs is needed to mix degradations across a batch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from torch_sr.color import rgb_to_gray
from torch_sr.data.blur_kernels import KernelSpec, choice, random_kernel, random_sinc, random_size, uniform
from torch_sr.data.degradations import gaussian_kernel, jpeg_compress

if TYPE_CHECKING:  # the config layer sits above data; only its type is needed here
    from torch_sr.config.schema import DegradationConfig


def filter2d(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of `img` (N, C, H, W) with one 2-D kernel; mirrored borders (replicated if too small)."""
    k = kernel.shape[-1]
    p = k // 2
    mode = "reflect" if p < min(img.shape[-2:]) else "replicate"
    x = F.pad(img, (p, p, p, p), mode=mode)
    c = img.shape[1]
    weight = kernel.to(img.device, img.dtype).expand(c, 1, k, k)
    return F.conv2d(x, weight, groups=c)


def _usm_blur(img: torch.Tensor) -> torch.Tensor:
    """The 51x51 Gaussian (sigma 8) of Real-ESRGAN's USM, applied as two 1-D passes (50x fewer products)."""
    g = gaussian_kernel(8.0, radius=25).to(img.device, img.dtype)
    mode = "reflect" if 25 < min(img.shape[-2:]) else "replicate"
    c = img.shape[1]
    x = F.conv2d(F.pad(img, (0, 0, 25, 25), mode=mode), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(F.pad(x, (25, 25, 0, 0), mode=mode), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def unsharp_mask(img: torch.Tensor, weight: float = 0.5, threshold: float = 10.0) -> torch.Tensor:
    """Real-ESRGAN's USM target: sharpen where the detail (img - 51x51 Gaussian blur, sigma 8) exceeds 10/255."""
    residual = img - _usm_blur(img)
    mask = (residual.abs() * 255 > threshold).to(img.dtype)
    soft = _usm_blur(mask)
    sharp = (img + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * img


def add_noise(
    img: torch.Tensor,
    gen: torch.Generator,
    gaussian_prob: float,
    sigma_range: tuple[float, float],
    poisson_range: tuple[float, float],
    gray_prob: float,
) -> torch.Tensor:
    """Gaussian (sigma on the 0-255 scale) or Poisson noise on one image (1, C, H, W), clamped to [0, 1].

    Grey noise (drawn with `gray_prob`) is the same on every channel, as sensor luminance noise; Poisson
    noise follows the image's own quantisation: v = 2^ceil(log2(distinct values)), Poisson(img v) / v.
    """
    cpu = img.detach().to("cpu", torch.float32)
    gray = uniform(gen, 0, 1) < gray_prob and img.shape[1] > 1
    if uniform(gen, 0, 1) < gaussian_prob:
        sigma = uniform(gen, *sigma_range) / 255
        shape = (1, 1, *cpu.shape[-2:]) if gray else cpu.shape
        noise = torch.randn(shape, generator=gen) * sigma
    else:
        scale = uniform(gen, *poisson_range)
        src = rgb_to_gray(cpu) if gray else cpu
        levels = len(torch.unique((src * 255).round()))
        v = 2 ** math.ceil(math.log2(max(levels, 2)))
        noise = (torch.poisson(src.clamp(0, 1) * v, generator=gen) / v - src) * scale
    return (img + noise.to(img.device, img.dtype)).clamp(0, 1)


def quantise(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits, as a saved image would be."""
    return img.clamp(0, 1).mul(255).round().div(255)


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """One image (1, C, H, W) through Pillow's JPEG encoder and decoder at `quality` (4:2:0, Pillow's default)."""
    return jpeg_compress(img[0], quality).to(img.device, img.dtype)[None]


def random_jpeg(img: torch.Tensor, gen: torch.Generator, quality_range: tuple[int, int]) -> torch.Tensor:
    low, high = quality_range
    return jpeg(img, int(torch.randint(low, high + 1, (), generator=gen)))


def _resize(img: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    size = (max(1, size[0]), max(1, size[1]))
    if mode == "area" or tuple(img.shape[-2:]) == size:
        return F.interpolate(img, size=size, mode="area") if mode == "area" else img
    return F.interpolate(img, size=size, mode=mode, align_corners=False)


class Degradation:
    """Batches of HR crops -> (degraded LR, target), as a `DegradationConfig` describes; see the module docstring."""

    def __init__(self, cfg: DegradationConfig, scale: int):
        self.cfg, self.scale = cfg, scale
        self.kernels = tuple(
            KernelSpec(getattr(cfg, f"kernel_prob{r}"), getattr(cfg, f"blur_sigma{r}"), getattr(cfg, f"betag_range{r}"),
                       getattr(cfg, f"betap_range{r}"), getattr(cfg, f"sinc_prob{r}"), cfg.blur_kernel_size)
            for r in ("", "2")
        )  # fmt: skip

    def __call__(
        self, hr: torch.Tensor, lr: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, target) of a batch: `hr` (N, C, H, W) and its clean bicubic `lr` in [0, 1], on any device."""
        cfg = self.cfg
        target = unsharp_mask(hr) if cfg.usm_target else hr
        out = []
        presets = cfg.presets
        for i in range(hr.shape[0]):
            preset = choice(gen, presets) if len(presets) > 1 else next(iter(presets))
            if preset == "bicubic":
                out.append(lr[i : i + 1])
            elif preset == "realesrgan":
                out.append(self.high_order(target[i : i + 1], gen))
            else:
                out.append(self.simple(lr[i : i + 1], gen, noise=preset == "noise_jpeg"))
        return torch.cat(out), target

    def simple(self, lr: torch.Tensor, gen: torch.Generator, noise: bool) -> torch.Tensor:
        """The 'jpeg' and 'noise_jpeg' presets: the clean LR, with noise for 'noise_jpeg', then JPEG."""
        cfg = self.cfg
        if noise:
            lr = quantise(add_noise(lr, gen, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range,
                                    cfg.gray_noise_prob))  # fmt: skip
        return random_jpeg(lr, gen, cfg.jpeg_range)

    def high_order(self, hr: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Real-ESRGAN's two rounds (blur, resize, noise, JPEG), then final resize + sinc and JPEG in random order."""
        cfg = self.cfg
        h, w = hr.shape[-2:]
        out = filter2d(hr, random_kernel(gen, self.kernels[0]))
        factor = self._resize_factor(gen, cfg.resize_prob, cfg.resize_range)
        out = _resize(out, (int(h * factor), int(w * factor)), self._mode(gen))
        out = add_noise(out, gen, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range, cfg.gray_noise_prob)
        out = random_jpeg(quantise(out), gen, cfg.jpeg_range)

        if uniform(gen, 0, 1) < cfg.second_blur_prob:
            out = filter2d(out, random_kernel(gen, self.kernels[1]))
        factor = self._resize_factor(gen, cfg.resize_prob2, cfg.resize_range2)
        out = _resize(out, (int(h / self.scale * factor), int(w / self.scale * factor)), self._mode(gen))
        out = add_noise(out, gen, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                        cfg.gray_noise_prob2)  # fmt: skip

        final = (h // self.scale, w // self.scale)
        # The final sinc's cut-off is drawn from [pi/3, pi] at every size (the rounds' kernels go down to pi/5).
        final_sinc = uniform(gen, 0, 1) < cfg.final_sinc_prob
        sinc = random_sinc(gen, random_size(gen, cfg.blur_kernel_size), (math.pi / 3, math.pi)) if final_sinc else None
        resize_first = uniform(gen, 0, 1) < 0.5
        mode = self._mode(gen)
        quality = int(torch.randint(cfg.jpeg_range2[0], cfg.jpeg_range2[1] + 1, (), generator=gen))
        if resize_first:
            out = _resize(out, final, mode)
            out = filter2d(out, sinc) if sinc is not None else out
            out = jpeg(quantise(out), quality)
        else:
            out = jpeg(quantise(out), quality)
            out = _resize(out, final, mode)
            out = filter2d(out, sinc) if sinc is not None else out
        return quantise(out)

    def _mode(self, gen: torch.Generator) -> str:
        modes = self.cfg.resize_modes
        return modes[int(torch.randint(len(modes), (), generator=gen))]

    @staticmethod
    def _resize_factor(gen: torch.Generator, probs: dict[str, float], low_high: tuple[float, float]) -> float:
        direction = choice(gen, probs)
        if direction == "up":
            return uniform(gen, 1.0, max(1.0, low_high[1]))
        if direction == "down":
            return uniform(gen, min(1.0, low_high[0]), 1.0)
        return 1.0


def build_degradation(cfg: DegradationConfig, scale: int) -> Degradation | None:
    """The training batches' degradation, or None for 'bicubic' (the dataset's clean LR is used as it is)."""
    return None if set(cfg.presets) == {"bicubic"} else Degradation(cfg, scale)
