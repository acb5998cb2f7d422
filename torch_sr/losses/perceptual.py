"""Perceptual (feature) loss: distances between feature maps of a frozen network, plus Gram/style.

ESRGAN compares VGG-19 `conv5_4` features (before the ReLU) with an L1 distance; SRGAN uses an MSE
on VGG features; the ResNet + PixelShuffle feature loss adds Gram-matrix terms. `PerceptualLoss`
takes any extractor that returns `{layer name: feature map}`: VGG (`network: "vgg"`) or the
ResNet-18 UNet's ResNet-18 features (`network: "resnet18"`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from torch_sr.archs.resnet_features import ResNetFeatures
from torch_sr.archs.vgg_features import VGGFeatures
from torch_sr.losses.content import build_content_loss

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations, divided by C*H*W so layers are comparable.

    Computed in float32 even under autocast: the sums over H*W positions, before the division,
    exceed float16's range (65504) on large crops.
    """
    n, c, h, w = features.shape
    with torch.autocast(features.device.type, enabled=False):
        f = features.reshape(n, c, h * w).float()
        return f @ f.transpose(1, 2) / (c * h * w)


class PerceptualLoss(nn.Module):
    """sum_l w_l * d(phi_l(x), phi_l(target)) + sum_l s_l * d(gram(phi_l(x)), gram(phi_l(target))).

    `extractor(x)` returns `{name: features}` for (at least) every layer named in `layer_weights`
    and `style_weights`. `normalize_input` maps [0, 1] RGB to ImageNet statistics first (grey
    inputs are repeated to three channels); `normalize_loss` divides each sum by its weights' sum.
    The target's features are computed without gradients.
    """

    def __init__(
        self,
        extractor: nn.Module,
        layer_weights: Mapping[str, float],
        criterion: str = "l1",
        normalize_input: bool = True,
        normalize_loss: bool = False,
        style_weights: Mapping[str, float] | None = None,
    ):
        super().__init__()
        self.extractor = extractor
        self.layer_weights = dict(layer_weights)
        self.style_weights = dict(style_weights or {})
        if not self.layer_weights and not self.style_weights:
            raise ValueError("PerceptualLoss needs at least one layer in layer_weights or style_weights")
        self.criterion = build_content_loss(criterion)
        self.normalize_input = normalize_input
        self.normalize_loss = normalize_loss
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize_input:
            x = (x - self.mean) / self.std
        return self.extractor(x)

    def terms(self, x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'perceptual': ..., 'style': ...} (each only when it has layers), for logging them apart."""
        if x.shape != target.shape:
            shapes = f"output {tuple(x.shape)} and target {tuple(target.shape)}"
            raise ValueError(f"perceptual loss: {shapes} differ in shape")
        fx = self._features(x)
        with torch.no_grad():
            ft = {k: v.detach() for k, v in self._features(target).items()}
        out = {}
        for name, weights, transform in (
            ("perceptual", self.layer_weights, lambda f: f),
            ("style", self.style_weights, gram_matrix),
        ):
            if weights:
                loss = sum(w * self.criterion(transform(fx[k]), transform(ft[k])) for k, w in weights.items())
                out[name] = loss / sum(weights.values()) if self.normalize_loss else loss
        return out

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.terms(x, target)
        return sum(terms.values())


def build_perceptual_loss(
    layer_weights: Mapping[str, float],
    vgg_type: str = "vgg19",
    criterion: str = "l1",
    normalize_input: bool = True,
    normalize_loss: bool = False,
    style_weights: Mapping[str, float] | None = None,
    pretrained: bool = True,
    weights_path: str | os.PathLike | None = None,
    network: str = "vgg",
) -> PerceptualLoss:
    """A perceptual loss computing only the layers it needs (the config's `perceptual_loss` keys).

    `network` is 'vgg' (`vgg_type`'s named layers, `torch_sr.archs.vgg_features`) or 'resnet18'
    (`torch_sr.archs.resnet_features`); both take ImageNet-normalised inputs.
    """
    layers = [*layer_weights, *(style_weights or {})]
    if network == "vgg":
        extractor: nn.Module = VGGFeatures(layers, vgg_type, pretrained=pretrained, weights_path=weights_path)
    elif network == "resnet18":
        extractor = ResNetFeatures(layers, pretrained=pretrained, weights_path=weights_path)
    else:
        raise ValueError(f"unknown perceptual network {network!r}; choose 'vgg' or 'resnet18'")
    return PerceptualLoss(extractor, layer_weights, criterion, normalize_input, normalize_loss, style_weights)
