"""Named-layer features of torchvision's ResNet-18, frozen, for perceptual losses; its ImageNet weights.

A layer is named after the child of torchvision's `resnet18` whose output it is: `conv1`, `bn1`,
`relu`, `maxpool`, `layer1` ... `layer4`. "Features after 3 layers" (the ResNet-18 UNet's
perceptual loss) are therefore `relu` (64 channels at 1/2 of the input size) and "after 6 layers"
`layer2` (128 channels at 1/8): the outputs of `children()[:3]` and `children()[:6]`. The modules
keep torchvision's names, so the ImageNet file loads as it is, and only the children up to the
deepest requested layer are built.

The same weight loading serves the UNet's encoder (`torch_sr.archs.unet_resnet18`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from torch_sr.archs.imagenet_weights import hub_weights_path, missing_weights_error
from torch_sr.files import read_weights
from torch_sr.errors import CheckpointError

# torchvision's ResNet18_Weights.IMAGENET1K_V1, as its hub cache names the file.
RESNET18_WEIGHTS_FILE = "resnet18-f37072fd.pth"
# The children of torchvision's resnet18 before its pooling head, in order.
RESNET18_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def resnet18_layer_names() -> list[str]:
    """The layer names a ResNet-18 perceptual loss accepts, in order (index n is `children()[n]`)."""
    return list(RESNET18_LAYERS)


def hub_resnet18_path() -> Path:
    """Where torchvision keeps its ImageNet ResNet-18 weights ($TORCH_HOME/hub/checkpoints/...)."""
    return hub_weights_path(RESNET18_WEIGHTS_FILE)


def load_resnet18_weights(module: nn.Module, path: Path) -> None:
    """Load the tensors of a torchvision ResNet-18 file that `module` has under the same names.

    `module` holds (some of) resnet18's children under their own names: every tensor it has must be
    in the file with its shape; the file's other tensors (`fc`, deeper layers) are ignored.
    """
    obj, _ = read_weights(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a ResNet-18 state dict, found {type(obj).__name__}")
    own = module.state_dict()
    try:
        module.load_state_dict({k: v for k, v in obj.items() if k in own})
    except RuntimeError as e:
        detail = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: not a torchvision ResNet-18 state dict ({detail}); give the file that "
            "torchvision.models.resnet18(weights='IMAGENET1K_V1') downloads"
        ) from None


class ResNetFeatures(nn.Module):
    """Frozen ResNet-18 returning `{layer name: activation}` for the requested layers.

    `pretrained=True` loads ImageNet weights from `weights_path` or, if that is None, from
    torchvision's hub cache (never downloaded here: a missing file is an error that says where to
    put it). `pretrained=False` keeps torchvision's random initialisation, for tests. Batch norm
    always uses its stored statistics (the module never leaves eval mode).
    """

    def __init__(
        self,
        layers: Iterable[str],
        pretrained: bool = True,
        weights_path: str | os.PathLike | None = None,
    ):
        super().__init__()
        from torchvision.models import resnet18

        names = resnet18_layer_names()
        self.layers = list(dict.fromkeys(layers))
        unknown = [name for name in self.layers if name not in names]
        if unknown or not self.layers:
            raise ValueError(f"unknown resnet18 layer(s) {unknown or '(none given)'}; valid: {', '.join(names)}")
        if weights_path is not None and not pretrained:
            raise ValueError("weights_path was given with pretrained=False; drop one of them")
        self.names = names[: max(names.index(name) for name in self.layers) + 1]
        net = resnet18(weights=None)
        net.relu = nn.ReLU()  # not in place: a requested `bn1` output must survive it
        for name in self.names:
            self.add_module(name, getattr(net, name))
        if pretrained:
            path = Path(weights_path) if weights_path is not None else hub_resnet18_path()
            if weights_path is None and not path.is_file():
                raise missing_weights_error("resnet18", RESNET18_WEIGHTS_FILE, "perceptual_loss/weights_path")
            load_resnet18_weights(self, path)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> ResNetFeatures:
        """Always stays in eval mode: a frozen feature extractor never trains."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for name in self.names:
            x = self._modules[name](x)
            if name in self.layers:
                out[name] = x
        return out
