"""The VGG-style discriminator of ESRGAN/SRGAN, usable at any patch size."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class VGGStyleDiscriminator(nn.Module):
    """3x3 conv blocks (stride 2 when a channel count repeats), BN + LeakyReLU, then dense layers.

    With the defaults this is the paper's network for 128x128 patches: features end as 512x8x8.
    Other patch sizes are accepted: the features are average-pooled to the grid the dense layers
    were built for, which is the identity at `input_size`.
    """

    def __init__(
        self,
        img_channels: int = 3,
        vgg_blk_ch: Sequence[int] = (64, 64, 128, 128, 256, 256, 512, 512),
        fc_features: Sequence[int] = (100,),
        input_size: int = 128,
    ):
        super().__init__()
        vgg_blk_ch, fc_features = list(vgg_blk_ch), list(fc_features)
        if not vgg_blk_ch:
            raise ValueError("vgg_blk_ch must list at least one channel count")
        self.hparams = dict(
            img_channels=img_channels, vgg_blk_ch=vgg_blk_ch, fc_features=fc_features, input_size=input_size
        )
        layers: list[nn.Module] = []
        in_ch, downsamples = img_channels, 0
        for i, out_ch in enumerate(vgg_blk_ch):
            stride = 2 if i > 0 and out_ch == vgg_blk_ch[i - 1] else 1
            downsamples += stride == 2
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=i == 0))
            if i > 0:  # the first conv has no normalisation, as in the paper
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        grid = max(1, input_size // 2**downsamples)
        self.pool = nn.AdaptiveAvgPool2d(grid)
        dense: list[nn.Module] = []
        in_f = in_ch * grid * grid
        for f in fc_features:
            dense += [nn.Linear(in_f, f), nn.LeakyReLU(0.2, inplace=True)]
            in_f = f
        dense.append(nn.Linear(in_f, 1))
        self.classifier = nn.Sequential(*dense)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logits of shape (N, 1); the adversarial losses apply the sigmoid."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
