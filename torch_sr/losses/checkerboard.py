"""Checkerboard loss: systematic differences between the sub-pixel phases of an upscaled image.

A pixel-shuffle upscaler computes each of the s x s output phases (pixel positions modulo s) with
its own filters, and nothing ties them together: an adversarial gradient that rewards any
high-frequency energy is met most cheaply by shifting the phases against each other, a fixed grid
pattern. Natural images have none. Without a perceptual loss to tie the phases (no pretrained VGG),
this term does: in windows of `window` x `window` cells of s x s pixels, it compares the mean
error of each phase with the mean error of all phases, which is zero for any output whose error
does not depend on the phase, whatever its texture.
"""
from __future__ import annotations

import torch


def checkerboard_loss(sr: torch.Tensor, hr: torch.Tensor, period: int, window: int = 8) -> torch.Tensor:
    """Mean |phase mean error - mean error| over windows, phases and channels of an (N, C, H, W) batch.

    `period` is the upscaling factor (the pixel-shuffle period); edges that do not fill a whole
    window are left out, and windows shrink to fit images smaller than `window` cells.
    """
    n, c, h, w = sr.shape
    if h < period or w < period:
        raise ValueError(f"checkerboard_loss: a {h}x{w} image has no whole {period}x{period} cell")
    wy, wx = min(window, h // period), min(window, w // period)
    ny, nx = h // period // wy, w // period // wx
    err = (sr - hr)[..., : ny * wy * period, : nx * wx * period]
    phase_means = err.reshape(n, c, ny, wy, period, nx, wx, period).mean(dim=(3, 6))  # (n, c, ny, p, nx, p)
    return (phase_means - phase_means.mean(dim=(3, 5), keepdim=True)).abs().mean()
