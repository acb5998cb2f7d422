"""SRResNet, the SRGAN generator (Ledig et al. 2017), and its batch-norm-free (EDSR-like) variant.

State-dict keys: `conv_first`, `act_first`, `body.{i}.{conv1,bn1,act,conv2,bn2}`, `conv_body`,
`bn_body`, `upsample.{n}.{conv,act}`, `conv_last` (the `bn*` keys only with batch norm).
"""
from __future__ import annotations

from itertools import count
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.init import scaled_kaiming_init_


def _norm(channels: int, use_batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip."""

    def __init__(self, channels: int, use_batch_norm: bool):
        super().__init__()
        bias = not use_batch_norm  # a bias before batch norm is cancelled by it
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.bn1 = _norm(channels, use_batch_norm)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=bias)
        self.bn2 = _norm(channels, use_batch_norm)
        # Start near the identity, which keeps the batch-norm-free variant stable (BN undoes the scale).
        scaled_kaiming_init_([self.conv1, self.conv2], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv to 4x the channels -> PixelShuffle x2 -> PReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, 1, 1)
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(F.pixel_shuffle(self.conv(x), 2))


class SRResNet(nn.Module):
    """With the defaults, the published x4 SRResNet (1.55 M parameters)."""

    def __init__(
        self,
        scale_factor: int = 4,
        img_channels: int = 3,
        num_channels: int = 64,
        num_blocks: int = 16,
        use_batch_norm: bool = True,
    ):
        super().__init__()
        if scale_factor < 1 or scale_factor & (scale_factor - 1):
            raise ValueError(f"scale_factor must be a power of two (1, 2, 4, 8), got {scale_factor}")
        self.hparams = dict(
            scale_factor=scale_factor,
            img_channels=img_channels,
            num_channels=num_channels,
            num_blocks=num_blocks,
            use_batch_norm=use_batch_norm,
        )
        self.info = GeneratorInfo(scale_factor, img_channels, img_channels)
        nf = num_channels
        self.conv_first = nn.Conv2d(img_channels, nf, 9, 1, 4)
        self.act_first = nn.PReLU()
        self.body = nn.Sequential(*(ResidualBlock(nf, use_batch_norm) for _ in range(num_blocks)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1, bias=not use_batch_norm)
        self.bn_body = _norm(nf, use_batch_norm)
        self.upsample = nn.Sequential(*(UpsampleBlock(nf) for _ in range(scale_factor.bit_length() - 1)))
        self.conv_last = nn.Conv2d(nf, img_channels, 9, 1, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.act_first(self.conv_first(x))
        feat = feat + self.bn_body(self.conv_body(self.body(feat)))
        return self.conv_last(self.upsample(feat))


def infer_hparams(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor arguments for a bare SRResNet state dict, or None when `sd` is not one."""
    if not {"conv_first.weight", "act_first.weight", "conv_body.weight", "conv_last.weight"} <= set(sd):
        return None
    nf, img_channels = sd["conv_first.weight"].shape[:2]
    return dict(
        scale_factor=2 ** next(n for n in count() if f"upsample.{n}.conv.weight" not in sd),
        img_channels=int(img_channels),
        num_channels=int(nf),
        num_blocks=next(i for i in count() if f"body.{i}.conv1.weight" not in sd),
        use_batch_norm="bn_body.weight" in sd,
    )
