"""RRDBNet, the ESRGAN generator (Wang et al. 2018): Residual-in-Residual Dense Blocks, no batch norm.

State-dict keys follow the BasicSR layout (`conv_first`, `body.{i}.rdb{k}.conv{j}`, `conv_body`,
`conv_up{n}`, `conv_hr`, `conv_last`); `torch_sr.archs.rrdb_layouts` converts the other
published layouts to it.

`RRDBNet.optimize_for_inference()` switches on a faster float32 CPU path for inference, kept in
`torch_sr.archs.rrdbnet_winograd`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs import rrdbnet_winograd
from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.init import scaled_kaiming_init_


class ResidualDenseBlock(nn.Module):
    """`num_convs` densely connected 3x3 convs; the last one maps back to `channels` (an RDB)."""

    def __init__(self, channels: int = 64, growth: int = 32, num_convs: int = 5, residual_scaling: float = 0.2):
        super().__init__()
        if num_convs < 2:
            raise ValueError(f"num_residual_blocks must be at least 2, got {num_convs}")
        self.residual_scaling = residual_scaling
        self.num_convs = num_convs
        for j in range(1, num_convs + 1):
            out = channels if j == num_convs else growth
            self.add_module(f"conv{j}", nn.Conv2d(channels + (j - 1) * growth, out, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        scaled_kaiming_init_(self.modules(), 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for j in range(1, self.num_convs):
            conv = getattr(self, f"conv{j}")
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        out = getattr(self, f"conv{self.num_convs}")(torch.cat(features, 1))
        return out.mul_(self.residual_scaling).add_(x)



class RRDB(nn.Module):
    """Residual in Residual Dense Block: `num_dense` RDBs in a scaled residual connection."""

    def __init__(
        self,
        channels: int = 64,
        growth: int = 32,
        num_dense: int = 3,
        num_convs: int = 5,
        residual_scaling: float = 0.2,
    ):
        super().__init__()
        if num_dense < 1:
            raise ValueError(f"num_dense_blocks must be at least 1, got {num_dense}")
        self.residual_scaling = residual_scaling
        self.num_dense = num_dense
        for k in range(1, num_dense + 1):
            self.add_module(f"rdb{k}", ResidualDenseBlock(channels, growth, num_convs, residual_scaling))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for k in range(1, self.num_dense + 1):
            out = getattr(self, f"rdb{k}")(out)
        return out.mul_(self.residual_scaling).add_(x)



class RRDBNet(nn.Module):
    """The ESRGAN generator; the defaults compute exactly the published 23-block x4 network.

    `num_basic_blocks` counts the RRDBs of the trunk, `num_dense_blocks` the residual dense blocks
    in each RRDB, and `num_residual_blocks` the densely connected 3x3 convs in each of those.
    `pixel_unshuffle` > 1 reproduces BasicSR/Real-ESRGAN's x2 and x1 models, which fold the input
    into channels first and then upsample x4 as usual.
    """

    fast_inference: bool = False  # see `optimize_for_inference`

    def __init__(
        self,
        scale_factor: int = 4,
        img_channels: int = 3,
        rrdb_channels: int = 64,
        growth_channels: int = 32,
        num_basic_blocks: int = 23,
        num_dense_blocks: int = 3,
        num_residual_blocks: int = 5,
        residual_scaling: float = 0.2,
        use_subpixel_conv: bool = False,
        pixel_unshuffle: int = 1,
    ):
        super().__init__()
        num_up = math.log2(scale_factor * pixel_unshuffle)
        if scale_factor < 1 or pixel_unshuffle < 1 or num_up != int(num_up):
            raise ValueError(
                f"scale_factor * pixel_unshuffle must be a power of two (1, 2, 4, 8), "
                f"got scale_factor={scale_factor}, pixel_unshuffle={pixel_unshuffle}"
            )
        self.hparams = dict(
            scale_factor=scale_factor,
            img_channels=img_channels,
            rrdb_channels=rrdb_channels,
            growth_channels=growth_channels,
            num_basic_blocks=num_basic_blocks,
            num_dense_blocks=num_dense_blocks,
            num_residual_blocks=num_residual_blocks,
            residual_scaling=residual_scaling,
            use_subpixel_conv=use_subpixel_conv and num_up > 0,  # meaningless without upsampling
            pixel_unshuffle=pixel_unshuffle,
        )
        self.info = GeneratorInfo(scale_factor, img_channels, img_channels, size_multiple=pixel_unshuffle)
        self.pixel_unshuffle = pixel_unshuffle
        self.num_up = int(num_up)
        self.use_subpixel_conv = use_subpixel_conv
        nf = rrdb_channels

        self.conv_first = nn.Conv2d(img_channels * pixel_unshuffle**2, nf, 3, 1, 1)
        self.body = nn.Sequential(
            *(
                RRDB(nf, growth_channels, num_dense_blocks, num_residual_blocks, residual_scaling)
                for _ in range(num_basic_blocks)
            )
        )
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        up_out = nf * 4 if use_subpixel_conv else nf
        for n in range(1, self.num_up + 1):
            self.add_module(f"conv_up{n}", nn.Conv2d(nf, up_out, 3, 1, 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, img_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if rrdbnet_winograd.applies(self, x):
            return rrdbnet_winograd.forward(self, x)
        if self.pixel_unshuffle > 1:
            x = F.pixel_unshuffle(x, self.pixel_unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for n in range(1, self.num_up + 1):
            conv = getattr(self, f"conv_up{n}")
            if self.use_subpixel_conv:
                feat = self.lrelu(F.pixel_shuffle(conv(feat), 2))
            else:
                feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def optimize_for_inference(self, enabled: bool | None = None) -> RRDBNet:
        """Run float32 CPU calls made without grad through `rrdbnet_winograd`; returns `self`.

        `None` switches it on only where it pays: networks of at least `rrdbnet_winograd.MIN_CHANNELS` trunk
        channels (at the paper's 64: 1.5-1.7x faster with one thread, 1.3-1.55x with two; at 16-32
        channels the transforms cost more than the multiplications they save). Outputs then match
        the plain layers to float32 rounding (about 1e-6 of the output range), not bit for bit.
        Nothing is precomputed: training, saving and loading are unaffected.
        """
        if enabled is None:
            enabled = self.conv_first.out_channels >= rrdbnet_winograd.MIN_CHANNELS
        self.fast_inference = enabled
        return self
