"""A plain ResNet generator with weighted residual connections and ICNR-initialised PixelShuffle steps.

In the style of the fast.ai course's super-resolution network. Scaling each residual branch by a small weight keeps
a BN-free stack stable; ICNR makes every PixelShuffle step start as nearest-neighbour upsampling,
so the network never has to unlearn checkerboard artefacts.

State-dict keys: `conv_first`, `body.{i}.{conv1,conv2}` with `body.{i}.res_scale` (a fixed weight,
kept as a buffer so that bare state dicts still say it) or `body.{i}.res_weight` (a learnable
one), `conv_body`, `upsample.{n}.conv`, `conv_last`.
"""
from __future__ import annotations

from itertools import count
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.init import icnr_, scaled_kaiming_init_


class WeightedResidualBlock(nn.Module):
    """x + w * conv(ReLU(conv(x))), where w is a fixed or a learnable scalar."""

    def __init__(self, channels: int, res_scale: float, learnable: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        weight = torch.tensor(float(res_scale))
        self.learnable = learnable
        if learnable:
            self.res_weight = nn.Parameter(weight)
        else:
            self.register_buffer("res_scale", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.res_weight if self.learnable else self.res_scale
        return x + weight * self.conv2(self.relu(self.conv1(x)))


class PixelShuffleStep(nn.Module):
    """conv to 4x the channels (ICNR-initialised) -> PixelShuffle x2 -> ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, 1, 1)
        icnr_(self.conv, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.pixel_shuffle(self.conv(x), 2))


class ResNetPixelShuffle(nn.Module):
    """conv, `num_blocks` weighted residual blocks, conv + long skip, log2(scale) x2 steps, conv."""

    def __init__(
        self,
        scale_factor: int = 4,
        img_channels: int = 3,
        num_channels: int = 64,
        num_blocks: int = 8,
        res_scale: float = 0.1,
        learnable_res_scale: bool = False,
    ):
        super().__init__()
        if scale_factor < 1 or scale_factor & (scale_factor - 1):
            raise ValueError(f"scale_factor must be a power of two (1, 2, 4, 8), got {scale_factor}")
        self.hparams = dict(
            scale_factor=scale_factor,
            img_channels=img_channels,
            num_channels=num_channels,
            num_blocks=num_blocks,
            res_scale=res_scale,
            learnable_res_scale=learnable_res_scale,
        )
        self.info = GeneratorInfo(scale_factor, img_channels, img_channels)
        nf = num_channels
        self.conv_first = nn.Conv2d(img_channels, nf, 3, 1, 1)
        self.body = nn.Sequential(
            *(WeightedResidualBlock(nf, res_scale, learnable_res_scale) for _ in range(num_blocks))
        )
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, img_channels, 3, 1, 1)
        scaled_kaiming_init_(self.modules())  # before the steps exist: ICNR is theirs
        self.upsample = nn.Sequential(*(PixelShuffleStep(nf) for _ in range(scale_factor.bit_length() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        return self.conv_last(self.upsample(feat))


def infer_hparams(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor arguments for a bare state dict of this network, or None when `sd` is not one."""
    if not {"conv_first.weight", "conv_body.weight", "conv_last.weight"} <= set(sd):
        return None
    learnable = "body.0.res_weight" in sd
    if not learnable and "body.0.res_scale" not in sd:
        return None
    nf, img_channels = sd["conv_first.weight"].shape[:2]
    return dict(
        scale_factor=2 ** next(n for n in count() if f"upsample.{n}.conv.weight" not in sd),
        img_channels=int(img_channels),
        num_channels=int(nf),
        num_blocks=next(i for i in count() if f"body.{i}.conv1.weight" not in sd),
        res_scale=0.1 if learnable else float(sd["body.0.res_scale"]),
        learnable_res_scale=learnable,
    )
