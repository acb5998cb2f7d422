"""SRCNN (Dong et al. 2014/2016): three convolutions on the bicubic upscale of the LR image.

The published network used valid convolutions, so its output was smaller than its input; this
one pads each convolution (zeros, `kernel // 2`) so that the output has exactly the HR size, like
every other generator here. It upscales inside `forward` with the library's MATLAB-compatible
bicubic, so callers give it the LR image as they give it to any generator.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.init import scaled_kaiming_init_
from torch_sr.data.imresize import upscale_integer


class SRCNN(nn.Module):
    """Patch extraction, non-linear mapping and reconstruction convolutions (keys `conv1..conv3`).

    The default 9-5-5 with 64/32 filters is the paper's best x4 network (30.48 dB on Set5);
    `kernel_sizes=(9, 1, 5)` is the original 9-1-5. `img_channels=1` is the published Y-channel
    model, 3 the common RGB variant.
    """

    def __init__(
        self,
        scale_factor: int = 4,
        img_channels: int = 3,
        kernel_sizes: tuple[int, ...] = (9, 5, 5),
        num_filters: tuple[int, ...] = (64, 32),
    ):
        super().__init__()
        kernel_sizes, num_filters = [int(k) for k in kernel_sizes], [int(f) for f in num_filters]
        if scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {scale_factor}")
        if len(kernel_sizes) != 3 or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be three odd sizes such as (9, 5, 5), got {kernel_sizes}")
        if len(num_filters) != 2 or min(num_filters) < 1:
            raise ValueError(f"num_filters must be two positive counts such as (64, 32), got {num_filters}")
        self.hparams = dict(
            scale_factor=scale_factor, img_channels=img_channels, kernel_sizes=kernel_sizes, num_filters=num_filters
        )
        self.info = GeneratorInfo(scale_factor, img_channels, img_channels)
        channels = [img_channels, *num_filters, img_channels]
        for i, k in enumerate(kernel_sizes, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(channels[i - 1], channels[i], k, padding=k // 2))
        self.relu = nn.ReLU(inplace=True)
        # Kaiming for the ReLU layers (the paper's Gaussian std 1e-3 everywhere trains slowly), and
        # the paper's near-zero start for the linear reconstruction layer.
        scaled_kaiming_init_([self.conv1, self.conv2])
        nn.init.normal_(self.conv3.weight, std=1e-3)
        nn.init.zeros_(self.conv3.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.info.scale > 1:
            x = upscale_integer(x, self.info.scale)  # MATLAB's bicubic; as convolutions, it exports to ONNX
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))


def infer_hparams(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor arguments for a bare SRCNN state dict, or None when `sd` is not one.

    The scale is not stored in SRCNN weights (they act on the upscaled image), so it stays the default.
    """
    if set(sd) != {f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}:
        return None
    weights = [sd[f"conv{i}.weight"] for i in (1, 2, 3)]
    if any(w.ndim != 4 for w in weights):
        return None
    return dict(
        img_channels=int(weights[0].shape[1]),
        kernel_sizes=[int(w.shape[-1]) for w in weights],
        num_filters=[int(weights[0].shape[0]), int(weights[1].shape[0])],
    )
