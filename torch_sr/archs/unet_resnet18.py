"""A UNet on a frozen ResNet-18 encoder that predicts the residual over a bilinear upscale.

The LR image is upscaled bilinearly; the ImageNet ResNet-18 (frozen: no gradients, batch norm
always in eval mode, so large batches are cheap) encodes it at 1/2 to 1/32 of its size; a small
decoder of residual blocks climbs back up through skip connections and predicts what to add to
the bilinear image. Only the decoder (about 1 M parameters) trains.

State-dict keys: `encoder.*` (torchvision's ResNet-18 names without `fc`), `bottleneck`,
`decoder.{i}.{fuse,res.conv1,res.conv2}`, `conv_last`.
"""
from __future__ import annotations

import warnings
from itertools import count
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.resnet_features import hub_resnet18_path, load_resnet18_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Encoder stages whose outputs feed the decoder, deepest last: 64 ch at 1/2, 64 at 1/4, 128 at 1/8,
# 256 at 1/16, 512 at 1/32 (the input itself is the skip at full size).
SKIP_CHANNELS = (3, 64, 64, 128, 256)
ENCODER_CHANNELS = 512
SIZE_MULTIPLE = 32


class ResidualBlock(nn.Module):
    """x + conv(ReLU(conv(x)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the encoder's skip, fuse with a conv, refine with a residual block."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.fuse = nn.Conv2d(in_channels + skip_channels, out_channels, 3, 1, 1)
        self.res = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
        return self.res(F.relu(self.fuse(torch.cat([x, skip], 1))))


class UNetResNet18(nn.Module):
    """UNet with a frozen ResNet-18 encoder, residual over bilinear upscaling; any input size.

    `pretrained_encoder` loads ImageNet weights from `encoder_weights` (a path) or, when that is
    empty, from torchvision's hub cache; when the cache lacks them the encoder stays random and a
    warning says so (nothing is ever downloaded). These two only choose the *initial* encoder
    weights, which every saved state dict holds anyway, so `hparams` record
    `pretrained_encoder=False` and no path: rebuilding a saved model never reads the cache.
    """

    def __init__(
        self,
        scale_factor: int = 4,
        decoder_channels: tuple[int, ...] = (112, 64, 48, 32, 16),
        pretrained_encoder: bool = True,
        encoder_weights: str = "",
    ):
        super().__init__()
        from torchvision.models import resnet18

        decoder_channels = [int(c) for c in decoder_channels]
        if scale_factor < 1:
            raise ValueError(f"scale_factor must be a positive integer, got {scale_factor}")
        if len(decoder_channels) != len(SKIP_CHANNELS) or min(decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels must be {len(SKIP_CHANNELS)} positive counts (1/16 to full size), "
                f"got {decoder_channels}"
            )
        if encoder_weights and not pretrained_encoder:
            raise ValueError("encoder_weights is given but pretrained_encoder is False; set it True to load them")
        self.hparams = dict(scale_factor=scale_factor, decoder_channels=decoder_channels, pretrained_encoder=False)
        self.info = GeneratorInfo(scale_factor, 3, 3)  # (any input size: padded to a multiple of 32 inside)

        net = resnet18(weights=None)
        self.encoder = nn.ModuleDict({n: m for n, m in net.named_children() if n not in ("avgpool", "fc")})
        if encoder_weights:
            load_resnet18_weights(self.encoder, Path(encoder_weights))
        elif pretrained_encoder:
            path = hub_resnet18_path()
            if path.is_file():
                load_resnet18_weights(self.encoder, path)
            else:
                warnings.warn(
                    f"ImageNet ResNet-18 weights not found at {path}: the frozen encoder of unet_resnet18 is "
                    "randomly initialised, which makes the model much weaker. Fetch them once with "
                    "torchvision.models.resnet18(weights='IMAGENET1K_V1') or pass encoder_weights=PATH.",
                    stacklevel=2,
                )
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        self.bottleneck = nn.Conv2d(ENCODER_CHANNELS, decoder_channels[0], 1)
        ins = [decoder_channels[0], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(ins, reversed(SKIP_CHANNELS), decoder_channels)
        )
        self.conv_last = nn.Conv2d(decoder_channels[-1], 3, 3, 1, 1)
        nn.init.zeros_(self.conv_last.weight)  # starts as plain bilinear upscaling
        nn.init.zeros_(self.conv_last.bias)

    def train(self, mode: bool = True) -> UNetResNet18:
        """Switch the decoder; the frozen encoder's batch norm keeps its ImageNet statistics."""
        super().train(mode)
        self.encoder.eval()
        return self

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc = self.encoder
        stem = enc.relu(enc.bn1(enc.conv1(x)))
        skips = [x, stem]
        feat = enc.maxpool(stem)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            feat = enc[name](feat)
            skips.append(feat)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] * self.info.scale, x.shape[-1] * self.info.scale
        up = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False) if self.info.scale > 1 else x
        pad_h, pad_w = -h % SIZE_MULTIPLE, -w % SIZE_MULTIPLE
        padded = F.pad(up, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else up
        # The frozen encoder records no graph unless the input itself needs gradients.
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            skips = self._encode((padded - self.mean) / self.std)
        feat = F.relu(self.bottleneck(skips.pop()))
        for block in self.decoder:
            feat = block(feat, skips.pop())
        return up + self.conv_last(feat)[..., :h, :w]


def infer_hparams(sd: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    """Constructor arguments for a bare state dict of this network, or None when `sd` is not one.

    The scale is not stored in the weights (the upscaling is bilinear), so it stays the default.
    """
    if not {"encoder.conv1.weight", "bottleneck.weight", "decoder.0.fuse.weight"} <= set(sd):
        return None
    n = next(i for i in count() if f"decoder.{i}.fuse.weight" not in sd)
    channels = [int(sd[f"decoder.{i}.fuse.weight"].shape[0]) for i in range(n)]
    return dict(decoder_channels=channels, pretrained_encoder=False)
