"""Name -> class tables for generators and discriminators, and the `build_*` functions.

The tables are written out by hand: adding an architecture means adding one line here.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from torch_sr.archs.resnet_pixelshuffle import ResNetPixelShuffle
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.archs.srcnn import SRCNN
from torch_sr.archs.srgan_discriminator import SRGANDiscriminator
from torch_sr.archs.srresnet import SRResNet
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.archs.unet_discriminator import UNetDiscriminatorSN
from torch_sr.archs.unet_resnet18 import UNetResNet18
from torch_sr.archs.vgg_discriminator import VGGStyleDiscriminator

GENERATORS: dict[str, type[nn.Module]] = {
    "rrdbnet": RRDBNet,
    "srcnn": SRCNN,
    "srresnet": SRResNet,
    "resnet_pixelshuffle": ResNetPixelShuffle,
    "unet_resnet18": UNetResNet18,
    "srvgg": SRVGGNetCompact,
}

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "vgg_discriminator": VGGStyleDiscriminator,
    "srgan_discriminator": SRGANDiscriminator,
    "unet_discriminator": UNetDiscriminatorSN,
}


def _build(table: dict[str, type[nn.Module]], kind: str, name: str, hparams: dict[str, Any]) -> nn.Module:
    try:
        cls = table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None
    return cls(**hparams)


def build_generator(name: str, **hparams: Any) -> nn.Module:
    """Build a generator by its registry name, e.g. `build_generator("rrdbnet", num_basic_blocks=16)`."""
    return _build(GENERATORS, "generator", name, hparams)


def build_discriminator(name: str, **hparams: Any) -> nn.Module:
    """Build a discriminator by its registry name."""
    return _build(DISCRIMINATORS, "discriminator", name, hparams)
