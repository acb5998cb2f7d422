"""Pixel-space (content) losses: L1, L2/MSE and Charbonnier."""
from __future__ import annotations

import torch
from torch import nn

from torch_sr.errors import ConfigError

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


def build_content_loss(name: str = "l1", eps: float = 1e-3) -> nn.Module:
    """`loss(x, target) -> scalar` by name: 'l1', 'l2' or 'mse' (the same), 'charbonnier' (with `eps`)."""
    if name == "l1":
        return nn.L1Loss()
    if name in ("l2", "mse"):
        return nn.MSELoss()
    if name == "charbonnier":
        return CharbonnierLoss(eps)
    raise ConfigError(f"unknown content loss {name!r}; choose one of {', '.join(CONTENT_LOSSES)}")
