"""Alpha for running a model on images with transparency (colour conversions: `torch_sr.color`).

Alpha handling follows the straight-alpha rule: the colour of a fully transparent pixel is undefined (often black), so it is
filled from its visible neighbours before upscaling, or it would bleed dark fringes into edges; the
upscaled alpha stays exactly 0 / 1 where bicubic alpha is (`confine_alpha`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fill_transparent(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Give fully transparent pixels the alpha-weighted colour of their nearest visible area.

    A push-pull pyramid: alpha-weighted colour sums are averaged down to one pixel, then each level
    fills its empty pixels from the coarser one. Visible pixels (alpha > 0) keep their colour.
    `colour` is `(N, C, H, W)`, `alpha` `(N, 1, H, W)`, both in [0, 1].
    """
    levels = [(colour * alpha, alpha)]
    while max(levels[-1][1].shape[-2:]) > 1:
        c, a = levels[-1]
        levels.append((F.avg_pool2d(c, 2, ceil_mode=True), F.avg_pool2d(a, 2, ceil_mode=True)))
    c, a = levels[-1]
    filled = c / a.clamp_min(1e-12)
    for c, a in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=c.shape[-2:], mode="nearest")
        filled = torch.where(a > 0, c / a.clamp_min(1e-12), coarse)
    return torch.where(alpha > 0, colour, filled)


# Bicubic alpha within this of 0 or 1 counts as fully transparent or opaque (under half an 8-bit step).
ALPHA_TOLERANCE = 1e-3


def confine_alpha(alpha_sr: torch.Tensor, alpha_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The model's upscaled alpha, kept exactly transparent where bicubic alpha is transparent and
    exactly opaque where it is opaque: a model trained on photos rings around a hard alpha edge (a
    faint ghost outline outside the shape, a dip inside), which composited shows as a line. The model
    shapes only the edge band, where bicubic alpha is partial."""
    bicubic = F.interpolate(alpha_lr, scale_factor=scale, mode="bicubic", align_corners=False)
    confined = torch.where(bicubic <= ALPHA_TOLERANCE, torch.zeros_like(alpha_sr), alpha_sr)
    return torch.where(bicubic >= 1 - ALPHA_TOLERANCE, torch.ones_like(alpha_sr), confined)
