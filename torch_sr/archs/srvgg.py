"""SRVGGNetCompact (Real-ESRGAN's `realesr-*v3` models): a plain conv stack that never leaves the LR grid.

Every 3x3 conv runs at the input resolution; one last conv makes `img_channels * scale**2`
channels that PixelShuffle turns into the HR image, which is added to the nearest-neighbour
upscale of the input. With no work at HR resolution it is the cheapest generator per output pixel
here, which makes it the right shape for CPU inference and for training on a CPU.

State-dict keys follow Real-ESRGAN: `body.{2k}` convs, `body.{2k+1}` activations (PReLU weights when
`act_type` is 'prelu'), so Real-ESRGAN's published compact checkpoints load as they are.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs.description import GeneratorInfo

ACTIVATIONS = ("prelu", "relu", "leakyrelu")


def _activation(act_type: str, channels: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=channels)
    if act_type == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(negative_slope=0.1, inplace=True)


class SRVGGNetCompact(nn.Module):
    """conv + act, `num_conv` x (conv + act), conv to C*s^2, PixelShuffle, + nearest(input)."""

    def __init__(
        self,
        scale_factor: int = 4,
        img_channels: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        act_type: str = "prelu",
    ):
        super().__init__()
        if scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {scale_factor}")
        if act_type not in ACTIVATIONS:
            raise ValueError(f"act_type must be one of {', '.join(ACTIVATIONS)}, got {act_type!r}")
        if num_conv < 0 or num_feat < 1:
            raise ValueError(f"need num_conv >= 0 and num_feat >= 1, got {num_conv} and {num_feat}")
        self.hparams = dict(
            scale_factor=scale_factor, img_channels=img_channels, num_feat=num_feat, num_conv=num_conv, act_type=act_type
        )
        self.info = GeneratorInfo(scale_factor, img_channels, img_channels)
        layers: list[nn.Module] = [nn.Conv2d(img_channels, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), _activation(act_type, num_feat)]
        layers.append(nn.Conv2d(num_feat, img_channels * scale_factor**2, 3, 1, 1))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = F.pixel_shuffle(out, self.info.scale)
        return out + F.interpolate(x, scale_factor=self.info.scale, mode="nearest")


def infer_hparams(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor arguments for a bare SRVGGNetCompact state dict (PReLU variant), or None.

    Without PReLU weights the activation cannot be told from the tensors, so such files are not
    recognised here; this library's own files record it.
    """
    convs = sorted(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".bias"))
    if len(convs) < 2 or convs != list(range(0, 2 * len(convs), 2)) or "body.1.weight" not in sd:
        return None
    if any(not k.startswith("body.") for k in sd) or sd["body.1.weight"].ndim != 1:
        return None
    first, last = sd["body.0.weight"], sd[f"body.{convs[-1]}.weight"]
    img_channels, num_feat = int(first.shape[1]), int(first.shape[0])
    scale = math.isqrt(last.shape[0] // img_channels)
    if scale * scale * img_channels != last.shape[0]:
        return None
    return dict(scale_factor=scale, img_channels=img_channels, num_feat=num_feat, num_conv=len(convs) - 2, act_type="prelu")
