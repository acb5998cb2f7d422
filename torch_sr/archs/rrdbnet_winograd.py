"""RRDBNet's faster float32 CPU inference path, switched on by `RRDBNet.optimize_for_inference()`.

The same network as `RRDBNet.forward`, computed differently: Winograd F(4x4, 3x3) convs
(`torch_sr.archs.winograd`) on zero-bordered buffers, each dense-block feature transformed once
into a shared buffer instead of re-concatenated, the 0.2 residual scaling folded into the last
conv's weights, bias and activation applied on the output tiles. Its rounding differs from the
plain layers' (as accurate against a float64 computation, not bit-equal to the published code),
which is why it is opt-in. Weights are transformed on every call (about 1% of the time), so no cache
goes stale after `load_state_dict`, an optimiser step or an EMA update. Numbers: `docs/benchmarks.md`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from torch_sr.archs import winograd

if TYPE_CHECKING:
    from torch_sr.archs.rrdbnet import RRDB, RRDBNet, ResidualDenseBlock

MIN_CHANNELS = 64  # `optimize_for_inference()` default: the path pays from this trunk width (docs/benchmarks.md)


def applies(net: RRDBNet, x: torch.Tensor) -> bool:
    """Whether `net(x)` may take this path: switched on, no grad, float32 on the CPU, no autocast."""
    return (
        net.fast_inference
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and net.conv_first.weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


def forward(net: RRDBNet, x: torch.Tensor) -> torch.Tensor:
    """`net(x)` for float32 CPU inference."""
    if net.pixel_unshuffle > 1:
        x = F.pixel_unshuffle(x, net.pixel_unshuffle)
    feat, grid = winograd.pad_into_grid(net.conv_first(x))  # 3 input channels: direct is cheaper
    slope = net.lrelu.negative_slope
    scratch = winograd.Scratch(x)
    body = _trunk(net, feat, grid, scratch)
    trunk_out = grid.new_padded(feat.shape[1], x)
    winograd.conv3x3(body, grid, net.conv_body.weight, net.conv_body.bias, trunk_out, scratch)
    feat = trunk_out.add_(feat)
    del body, trunk_out  # (`del`s keep at most two full-size buffers alive, as the plain layers do)
    for n in range(1, net.num_up + 1):
        conv = getattr(net, f"conv_up{n}")
        if net.use_subpixel_conv:
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
    hr = grid.new_padded(net.conv_hr.out_channels, x)
    winograd.conv3x3(feat, grid, net.conv_hr.weight, net.conv_hr.bias, hr, scratch, slope)
    del feat, scratch
    out = F.conv2d(hr, net.conv_last.weight, net.conv_last.bias)  # few outputs: direct is cheaper
    return out[:, :, : grid.h, : grid.w].contiguous()


def _trunk(net: RRDBNet, feat: torch.Tensor, grid: winograd.TileGrid, scratch: winograd.Scratch) -> torch.Tensor:
    """`net.body` on a padded buffer; returns another padded buffer (or `feat` when there are no blocks)."""
    if not len(net.body):
        return feat
    rdb = net.body[0].rdb1
    last = getattr(rdb, f"conv{rdb.num_convs}")
    v = feat.new_empty((winograd.POSITIONS, last.in_channels, grid.tiles))
    growth = grid.new_padded(rdb.conv1.out_channels, feat)
    pool = [grid.new_padded(feat.shape[1], feat) for _ in range(3)]
    cur = feat
    for block in net.body:
        a, b = [p for p in pool if p is not cur][:2]
        cur = _rrdb(block, cur, grid, (a, b), v, growth, scratch)
    return cur


def _rrdb(
    block: RRDB,
    src: torch.Tensor,
    grid: winograd.TileGrid,
    spare: tuple[torch.Tensor, torch.Tensor],
    v: torch.Tensor,
    feat: torch.Tensor,
    scratch: winograd.Scratch,
) -> torch.Tensor:
    """One RRDB between padded buffers; the RDBs ping-pong between the two `spare` ones, one of which is returned."""
    out = src
    for k in range(1, block.num_dense + 1):
        dst = spare[(k - 1) % 2]
        _rdb(getattr(block, f"rdb{k}"), out, grid, dst, v, feat, scratch)
        out = dst
    return torch.add(src, out, alpha=block.residual_scaling, out=out)


def _rdb(
    rdb: ResidualDenseBlock,
    src: torch.Tensor,
    grid: winograd.TileGrid,
    dst: torch.Tensor,
    v: torch.Tensor,
    feat: torch.Tensor,
    scratch: winograd.Scratch,
) -> None:
    """One residual dense block between padded buffers: `dst = src + scaling * RDB(src)`.

    `v` (36, all input channels of the last conv, P) holds every feature's transform once;
    `feat` is a padded growth-channel buffer, reused for each new feature.
    """
    c = src.shape[1]
    winograd.transform_input(src, grid, v[:, :c], scratch)
    for j in range(1, rdb.num_convs):
        conv = getattr(rdb, f"conv{j}")
        cin, cout = conv.in_channels, conv.out_channels
        u = winograd.transform_weight(conv.weight, scratch)
        y = winograd.conv_tiles(v[:, :cin], u, conv.bias, scratch)
        F.leaky_relu_(y, rdb.lrelu.negative_slope)
        grid.tiled(feat).copy_(winograd.untile(y, grid))
        grid.clear_overhang(feat)
        winograd.transform_input(feat, grid, v[:, cin : cin + cout], scratch)
    last = getattr(rdb, f"conv{rdb.num_convs}")
    scale = rdb.residual_scaling
    u = winograd.transform_weight(last.weight, scratch, scale)
    y = winograd.conv_tiles(v, u, last.bias, scratch, scale)
    torch.add(grid.tiled(src), winograd.untile(y, grid), out=grid.tiled(dst))
    grid.clear_overhang(dst)
