"""RRDBNet, the ESRGAN generator (Wang et al. 2018): Residual-in-Residual Dense Blocks, no batch norm.

State-dict keys follow the BasicSR layout (`conv_first`, `body.{i}.rdb{k}.conv{j}`, `conv_body`,
`conv_up{n}`, `conv_hr`, `conv_last`); `torch_sr.model_files.rrdb_layouts` converts the other
published layouts to it.

`RRDBNet.optimize_for_inference()` switches on a faster float32 CPU path for calls made with grad
disabled (`torch.no_grad()` / `torch.inference_mode()`): Winograd F(4x4, 3x3) convs
(`torch_sr.archs.winograd`), each dense-block feature transformed once into a shared buffer
instead of re-concatenated, the 0.2 residual scaling folded into the last conv's weights, bias
and activation applied on the output tiles. It is opt-in because its rounding differs from the
plain layers': as accurate against a float64 computation, but not bit-equal to the published
code, and the layout tests (`tests/test_rrdbnet.py`) pin bit-level agreement. Weights are
transformed on every call (about 1% of the time), so no cache goes stale after `load_state_dict`,
an optimiser step or an EMA update. Training (grad enabled), other devices and other dtypes always
run the plain layers. Numbers: `docs/benchmarks.md`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs import winograd
from torch_sr.archs.init import scaled_kaiming_init_

FAST_MIN_CHANNELS = 64  # `optimize_for_inference()` default: the Winograd path pays from here (docs/benchmarks.md)


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

    def forward_tiles(
        self,
        src: torch.Tensor,
        grid: winograd.TileGrid,
        dst: torch.Tensor,
        v: torch.Tensor,
        feat: torch.Tensor,
        scratch: winograd.Scratch,
    ) -> None:
        """Inference between padded buffers: `dst = src + scaling * RDB(src)`.

        `v` (36, all input channels of the last conv, P) holds every feature's transform once;
        `feat` is a padded growth-channel buffer, reused for each new feature.
        """
        c = src.shape[1]
        winograd.transform_input(src, grid, v[:, :c], scratch)
        for j in range(1, self.num_convs):
            conv = getattr(self, f"conv{j}")
            cin, cout = conv.in_channels, conv.out_channels
            u = winograd.transform_weight(conv.weight, scratch)
            y = winograd.conv_tiles(v[:, :cin], u, conv.bias, scratch)
            F.leaky_relu_(y, self.lrelu.negative_slope)
            grid.tiled(feat).copy_(winograd.untile(y, grid))
            grid.clear_overhang(feat)
            winograd.transform_input(feat, grid, v[:, cin : cin + cout], scratch)
        last = getattr(self, f"conv{self.num_convs}")
        scale = self.residual_scaling
        u = winograd.transform_weight(last.weight, scratch, scale)
        y = winograd.conv_tiles(v, u, last.bias, scratch, scale)
        torch.add(grid.tiled(src), winograd.untile(y, grid), out=grid.tiled(dst))
        grid.clear_overhang(dst)


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

    def forward_tiles(
        self,
        src: torch.Tensor,
        grid: winograd.TileGrid,
        spare: tuple[torch.Tensor, torch.Tensor],
        v: torch.Tensor,
        feat: torch.Tensor,
        scratch: winograd.Scratch,
    ) -> torch.Tensor:
        """Inference between padded buffers; the RDBs ping-pong between the two `spare` ones, one of which is returned."""
        out = src
        for k in range(1, self.num_dense + 1):
            dst = spare[(k - 1) % 2]
            getattr(self, f"rdb{k}").forward_tiles(out, grid, dst, v, feat, scratch)
            out = dst
        return torch.add(src, out, alpha=self.residual_scaling, out=out)


class RRDBNet(nn.Module):
    """The ESRGAN generator; the defaults compute exactly the published 23-block x4 network.

    `num_basic_blocks` counts the RRDBs of the trunk, `num_dense_blocks` the residual dense blocks
    in each RRDB, and `num_residual_blocks` the densely connected 3x3 convs in each of those.
    `pixel_unshuffle` > 1 reproduces BasicSR/Real-ESRGAN's x2 and x1 models, which fold the input
    into channels first and then upsample x4 as usual.
    """

    arch_name = "rrdbnet"
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
        self.scale = scale_factor
        self.in_channels = self.out_channels = img_channels
        self.size_multiple = pixel_unshuffle  # inputs must be divisible by this
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
        if self._takes_fast_path(x):
            return self._forward_tiles(x)
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
        """Run float32 CPU calls made without grad through the Winograd path (see the module doc); returns `self`.

        `None` switches it on only where it pays: networks of at least `FAST_MIN_CHANNELS` trunk
        channels (at the paper's 64: 1.5-1.7x faster with one thread, 1.3-1.55x with two; at 16-32
        channels the transforms cost more than the multiplications they save). Outputs then match
        the plain layers to float32 rounding (about 1e-6 of the output range), not bit for bit.
        Nothing is precomputed: training, saving and loading are unaffected.
        """
        if enabled is None:
            enabled = self.conv_first.out_channels >= FAST_MIN_CHANNELS
        self.fast_inference = enabled
        return self

    def _takes_fast_path(self, x: torch.Tensor) -> bool:
        return (
            self.fast_inference
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.conv_first.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )

    def _forward_tiles(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` for float32 CPU inference, through `winograd` on zero-bordered buffers."""
        if self.pixel_unshuffle > 1:
            x = F.pixel_unshuffle(x, self.pixel_unshuffle)
        feat, grid = winograd.pad_into_grid(self.conv_first(x))  # 3 input channels: direct is cheaper
        slope = self.lrelu.negative_slope
        scratch = winograd.Scratch(x)
        body = self._trunk_tiles(feat, grid, scratch)
        trunk_out = grid.new_padded(feat.shape[1], x)
        winograd.conv3x3(body, grid, self.conv_body.weight, self.conv_body.bias, trunk_out, scratch)
        feat = trunk_out.add_(feat)
        del body, trunk_out  # (`del`s keep at most two full-size buffers alive, as the plain layers do)
        for n in range(1, self.num_up + 1):
            conv = getattr(self, f"conv_up{n}")
            if self.use_subpixel_conv:
                up = grid.new_padded(conv.out_channels, x)
                winograd.conv3x3(feat, grid, conv.weight, conv.bias, up, scratch)
                del feat
                shuffled = F.leaky_relu_(F.pixel_shuffle(grid.inner(up), 2), slope)
                del up
                feat, grid = winograd.pad_into_grid(shuffled)
                del shuffled
            else:
                src, grid = winograd.pad_into_grid(grid.inner(feat), upsample=2)
                feat = grid.new_padded(conv.out_channels, x)
                winograd.conv3x3(src, grid, conv.weight, conv.bias, feat, scratch, slope)
                del src
        hr = grid.new_padded(self.conv_hr.out_channels, x)
        winograd.conv3x3(feat, grid, self.conv_hr.weight, self.conv_hr.bias, hr, scratch, slope)
        del feat, scratch
        out = F.conv2d(hr, self.conv_last.weight, self.conv_last.bias)  # few outputs: direct is cheaper
        return out[:, :, : grid.h, : grid.w].contiguous()

    def _trunk_tiles(self, feat: torch.Tensor, grid: winograd.TileGrid, scratch: winograd.Scratch) -> torch.Tensor:
        """`self.body` on a padded buffer; returns another padded buffer (or `feat` when there are no blocks)."""
        if not len(self.body):
            return feat
        rdb = self.body[0].rdb1
        last = getattr(rdb, f"conv{rdb.num_convs}")
        v = feat.new_empty((winograd.POSITIONS, last.in_channels, grid.tiles))
        growth = grid.new_padded(rdb.conv1.out_channels, feat)
        pool = [grid.new_padded(feat.shape[1], feat) for _ in range(3)]
        cur = feat
        for block in self.body:
            a, b = [p for p in pool if p is not cur][:2]
            cur = block.forward_tiles(cur, grid, (a, b), v, growth, scratch)
        return cur
