"""Pixel-space (content) losses: L1, L2/MSE and Charbonnier, optionally with extra weight on the luma."""
from __future__ import annotations

import torch
from torch import nn

from torch_sr.errors import ConfigError
from torch_sr.color import rgb_to_y

CONTENT_LOSSES = ("l1", "l2", "mse", "charbonnier")


def charbonnier_loss(x: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((x - target)^2 + eps^2)): L1 that is smooth at zero (LapSRN's robust loss)."""
    return torch.sqrt((x - target).square() + eps * eps).mean()


class CharbonnierLoss(nn.Module):
    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return charbonnier_loss(x, target, self.eps)


class PlusLumaLoss(nn.Module):
    """`loss(x, t) + y_weight * loss(Y(x), Y(t))`, Y the BT.601 luma on [0, 1] (offset dropped).

    The benchmarks score PSNR on Y alone, and VDSR/SRCNN trained on Y alone; an RGB loss spends the
    model's capacity on the chroma too. The RGB term keeps the colours right, the Y term moves the
    emphasis towards what the eye (and PSNR-Y) sees most.
    """

    def __init__(self, base: nn.Module, y_weight: float):
        super().__init__()
        self.base, self.y_weight = base, y_weight

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        luma = self.base(rgb_to_y(x) / 255, rgb_to_y(target) / 255)  # the offset 16/255 cancels in x - target
        return self.base(x, target) + self.y_weight * luma


def build_content_loss(name: str = "l1", eps: float = 1e-3, y_weight: float = 0.0) -> nn.Module:
    """`loss(x, target) -> scalar` by name: 'l1', 'l2' or 'mse' (the same), 'charbonnier' (with `eps`);
    `y_weight` > 0 adds that times the same loss on the luma of RGB images (`PlusLumaLoss`)."""
    if name == "l1":
        base: nn.Module = nn.L1Loss()
    elif name in ("l2", "mse"):
        base = nn.MSELoss()
    elif name == "charbonnier":
        base = CharbonnierLoss(eps)
    else:
        raise ConfigError(f"unknown content loss {name!r}; choose one of {', '.join(CONTENT_LOSSES)}")
    return PlusLumaLoss(base, y_weight) if y_weight else base
