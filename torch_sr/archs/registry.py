"""The generator and discriminator tables, and the `build_*` functions.

The tables are written out by hand: adding an architecture means adding one line here. A generator's
entry is its `GeneratorArch` (class and state-dict reader, `torch_sr.archs.description`).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from torch_sr.archs import resnet_pixelshuffle, rrdb_layouts, srcnn, srresnet, srvgg, unet_resnet18
from torch_sr.archs.description import GeneratorArch, unwrap
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.archs.srgan_discriminator import SRGANDiscriminator
from torch_sr.archs.unet_discriminator import UNetDiscriminatorSN
from torch_sr.archs.vgg_discriminator import VGGStyleDiscriminator

# In the order bare state dicts are tried: every reader accepts only its own key names.
GENERATORS: dict[str, GeneratorArch] = {
    arch.name: arch
    for arch in (
        GeneratorArch("rrdbnet", RRDBNet, rrdb_layouts.infer_hparams, rrdb_layouts.canonical_keys),
        GeneratorArch("srcnn", srcnn.SRCNN, srcnn.infer_hparams),
        GeneratorArch("srresnet", srresnet.SRResNet, srresnet.infer_hparams),
        GeneratorArch("resnet_pixelshuffle", resnet_pixelshuffle.ResNetPixelShuffle, resnet_pixelshuffle.infer_hparams),
        GeneratorArch("unet_resnet18", unet_resnet18.UNetResNet18, unet_resnet18.infer_hparams),
        GeneratorArch("srvgg", srvgg.SRVGGNetCompact, srvgg.infer_hparams),
    )
}

DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "vgg_discriminator": VGGStyleDiscriminator,
    "srgan_discriminator": SRGANDiscriminator,
    "unet_discriminator": UNetDiscriminatorSN,
}


def generator_classes() -> dict[str, type[nn.Module]]:
    """Name -> generator class (read at call time, so a test may register an architecture)."""
    return {name: arch.cls for name, arch in GENERATORS.items()}


def generator_arch(model: nn.Module) -> GeneratorArch:
    """The registry entry of a built generator (through DataParallel / DDP wrappers)."""
    model = unwrap(model)
    for arch in GENERATORS.values():
        if type(model) is arch.cls:
            return arch
    raise ValueError(f"{type(model).__name__} is not a registered generator; known: {', '.join(sorted(GENERATORS))}")


def _build(table: dict[str, type[nn.Module]], kind: str, name: str, hparams: dict[str, Any]) -> nn.Module:
    try:
        cls = table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(table))}") from None
    return cls(**hparams)


def build_generator(name: str, **hparams: Any) -> nn.Module:
    """Build a generator by its registry name, e.g. `build_generator("rrdbnet", num_basic_blocks=16)`."""
    return _build(generator_classes(), "generator", name, hparams)


def build_discriminator(name: str, **hparams: Any) -> nn.Module:
    """Build a discriminator by its registry name."""
    return _build(DISCRIMINATORS, "discriminator", name, hparams)
