"""Named-layer features of torchvision's VGG networks, frozen, for perceptual losses.

Layers are named as in BasicSR: `conv{b}_{i}` is the output of convolution i of block b *before*
its ReLU (ESRGAN's choice: `conv5_4`), `relu{b}_{i}` the output after it, `pool{b}` the output of
the block's max-pooling. The modules are built in torchvision's order, so `features.{n}` keys
match torchvision's ImageNet files, and only up to the deepest requested layer.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from torch_sr.archs.imagenet_weights import hub_weights_path, missing_weights_error
from torch_sr.files import read_weights
from torch_sr.state_dicts import load_state_dict_checked, unwrap_state_dict

# Output channels of the convolutions of each block (torchvision configs A, B, D, E).
VGG_BLOCKS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256,) * 2, (512,) * 2, (512,) * 2),
    "vgg13": ((64,) * 2, (128,) * 2, (256,) * 2, (512,) * 2, (512,) * 2),
    "vgg16": ((64,) * 2, (128,) * 2, (256,) * 3, (512,) * 3, (512,) * 3),
    "vgg19": ((64,) * 2, (128,) * 2, (256,) * 4, (512,) * 4, (512,) * 4),
}
# torchvision's ImageNet weights (IMAGENET1K_V1); the name is what its hub cache stores.
VGG_WEIGHT_FILES = {
    "vgg11": "vgg11-8a719046.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
}


def vgg_layer_names(vgg_type: str = "vgg19") -> list[str]:
    """Every layer name of a VGG's `features`, in order (index n is torchvision's `features[n]`)."""
    if vgg_type not in VGG_BLOCKS:
        raise ValueError(f"unknown VGG type {vgg_type!r}; choose one of {', '.join(VGG_BLOCKS)}")
    names = []
    for b, convs in enumerate(VGG_BLOCKS[vgg_type], start=1):
        for i in range(1, len(convs) + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


def vgg_weights_file(vgg_type: str = "vgg19") -> Path:
    """Where torchvision keeps (and we look for) the ImageNet weights: `$TORCH_HOME/hub/checkpoints/`."""
    return hub_weights_path(VGG_WEIGHT_FILES[vgg_type])


class VGGFeatures(nn.Module):
    """Frozen VGG `features` returning `{layer name: activation}` for the requested layers.

    `pretrained=True` loads ImageNet weights from `weights_path` or, if that is None, from
    torchvision's cache (never downloaded here: a missing file is an error that says where to put
    it). `pretrained=False` keeps torchvision's random initialisation, for tests.
    """

    def __init__(
        self,
        layers: Iterable[str],
        vgg_type: str = "vgg19",
        pretrained: bool = True,
        weights_path: str | os.PathLike | None = None,
    ):
        super().__init__()
        names = vgg_layer_names(vgg_type)
        self.layers = list(dict.fromkeys(layers))
        unknown = [name for name in self.layers if name not in names]
        if unknown or not self.layers:
            raise ValueError(f"unknown {vgg_type} layer(s) {unknown or '(none given)'}; valid: {', '.join(names)}")
        deepest = max(names.index(name) for name in self.layers)
        self.hparams = {"vgg_type": vgg_type, "layers": self.layers}  # named in weight-mismatch errors
        self.names = names[: deepest + 1]
        self.features = nn.Sequential(*_vgg_modules(vgg_type)[: deepest + 1])
        if pretrained:
            self._load(vgg_type, weights_path)
        elif weights_path is not None:
            raise ValueError("weights_path was given with pretrained=False; drop one of them")
        self.requires_grad_(False)
        self.train(False)

    def _load(self, vgg_type: str, weights_path: str | os.PathLike | None) -> None:
        path = Path(weights_path) if weights_path is not None else vgg_weights_file(vgg_type)
        if weights_path is None and not path.is_file():
            raise missing_weights_error(vgg_type, VGG_WEIGHT_FILES[vgg_type], "perceptual_loss/weights_path")
        source = str(path)
        obj, _ = read_weights(path)
        sd = unwrap_state_dict(obj, source)
        own = self.state_dict()
        load_state_dict_checked(self, {k: v for k, v in sd.items() if k in own}, f"{source} ({vgg_type})")

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always stays in eval mode: a frozen feature extractor never trains."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name, module in zip(self.names, self.features):
            x = module(x)
            if name in self.layers:
                out[name] = x
        return out


def _vgg_modules(vgg_type: str) -> list[nn.Module]:
    """torchvision's `make_layers(cfg, batch_norm=False)` with non-inplace ReLUs (conv outputs are kept)."""
    modules: list[nn.Module] = []
    in_ch = 3
    for convs in VGG_BLOCKS[vgg_type]:
        for out_ch in convs:
            conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            modules += [conv, nn.ReLU()]
            in_ch = out_ch
        modules.append(nn.MaxPool2d(2, 2))
    return modules
