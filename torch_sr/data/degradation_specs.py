"""Test-time degradations named by a short spec, applied the same way on every run (`test.py --degrade`).

A spec is steps joined by '+': `blur:SIGMA` (Gaussian blur of the HR image, sigma in HR pixels,
before the downscaling; at most once, and first), then in the order given `noise:SIGMA` (colour
Gaussian noise, sigma on the 0-255 scale, rounded to 8 bits) and `jpeg:Q` (a real JPEG round trip at
quality Q). The LR is always the MATLAB-bicubic downscale of the modcropped HR, as for clean scoring.
`realesrgan` instead makes the LR with Real-ESRGAN's whole training degradation model (its published
settings). Each image's random draws are seeded by its name and the spec, so scores repeat exactly.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from torch_sr.data.degradations import gaussian_blur, jpeg_compress
from torch_sr.data.imresize import imresize
from torch_sr.errors import TorchSRError

FORMS = "jpeg:Q, noise:SIGMA, blur:SIGMA joined by '+' (e.g. noise:10+jpeg:70), or realesrgan"
# Blur sigma in HR pixels (below 0.1 the kernel is a point; far above 50 it is the image's mean), noise on 0-255.
SIGMA_RANGE = {"blur": (0.1, 50.0), "noise": (0.0, 255.0)}


@dataclass(frozen=True)
class EvalDegradation:
    """A parsed spec: its text and steps (('blur' | 'noise' | 'jpeg', value), ...) or the 'realesrgan' model."""

    text: str
    steps: tuple[tuple[str, float], ...] = ()
    realesrgan: bool = False

    def seed(self, name: str) -> int:
        """The seed of one image's draws: its name and this spec, nothing else."""
        return zlib.crc32(f"{name}|{self.text}".encode())

    def apply(self, hr: np.ndarray, scale: int, name: str) -> np.ndarray:
        """The uint8 LR (HWC) of the modcropped uint8 HR image `hr`, degraded as the spec says."""
        if self.realesrgan:
            return _realesrgan_lr(hr, scale, self.seed(name))
        rng = np.random.default_rng(self.seed(name))
        steps = list(self.steps)
        if steps and steps[0][0] == "blur":
            hr = gaussian_blur(hr, steps.pop(0)[1])
        lr = imresize(hr, 1 / scale)
        for kind, value in steps:
            if kind == "noise":
                noisy = lr.astype(np.float64) + rng.normal(0.0, value, lr.shape)
                lr = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
            else:
                lr = jpeg_compress(lr, int(value))
        return lr


def parse_degradation(spec: str) -> EvalDegradation:
    """'noise:10+jpeg:70' -> EvalDegradation; a TorchSRError naming the bad part and the valid forms otherwise."""
    text = spec.strip().lower()
    if text == "realesrgan":
        return EvalDegradation(text, realesrgan=True)
    steps = []
    for part in text.split("+"):
        kind, _, value = part.strip().partition(":")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if kind not in ("blur", "noise", "jpeg") or not math.isfinite(number):
            raise TorchSRError(f"--degrade {spec!r}: cannot read {part!r}; use {FORMS}")
        if kind == "jpeg" and not (number == int(number) and 1 <= number <= 100):
            raise TorchSRError(f"--degrade {spec!r}: JPEG quality must be a whole number in 1..100, got {value}")
        low, high = SIGMA_RANGE.get(kind, (0, 0))
        if kind != "jpeg" and not low <= number <= high:
            raise TorchSRError(f"--degrade {spec!r}: {kind} sigma must be in {low:g}..{high:g}, got {value}")
        if kind == "blur" and steps:
            raise TorchSRError(f"--degrade {spec!r}: blur acts on the HR image, so it comes first and once")
        steps.append((kind, number))
    return EvalDegradation("+".join(f"{k}:{v:g}" for k, v in steps), tuple(steps))


def _realesrgan_lr(hr: np.ndarray, scale: int, seed: int) -> np.ndarray:
    from torch_sr.config.schema import DegradationConfig
    from torch_sr.data.realistic_degradations import Degradation

    x = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))).float().div(255)[None]
    lr, _ = Degradation(DegradationConfig(preset="realesrgan", gt_usm=False), scale)(
        x, x[..., ::scale, ::scale], torch.Generator().manual_seed(seed)
    )
    return lr[0].mul(255).round().byte().permute(1, 2, 0).numpy()
