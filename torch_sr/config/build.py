"""The networks and the perceptual loss a config describes, with errors worded for the config."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.module import register_module_parameter_registration_hook

from torch_sr.archs.imagenet_weights import hub_weights_path, missing_weights_error
from torch_sr.archs.registry import build_discriminator, build_generator
from torch_sr.archs.resnet_features import RESNET18_WEIGHTS_FILE
from torch_sr.archs.vgg_features import VGG_WEIGHT_FILES
from torch_sr.config.arch_params import arch_params
from torch_sr.config.schema import ArchConfig, TrainConfig
from torch_sr.config.validate import arch_table
from torch_sr.errors import CheckpointError, ConfigError, first_line
from torch_sr.losses.perceptual import PerceptualLoss, build_perceptual_loss


def _build(build, kind: str, section: ArchConfig, source: str, **overrides) -> nn.Module:
    try:
        return build(section.arch, **{**section.kwargs, **overrides})
    except (TypeError, ValueError) as e:  # the constructor's own range checks
        raise ConfigError(f"{source}: {kind} ({section.arch}): {e}") from None


# Bounds on a configured network, checked on PyTorch's `meta` device (which allocates nothing) before any
# data is read. The shipped configs' networks have at most 24 M parameters (SRGAN's discriminator) and 702
# tensors (RRDBNet, 23 blocks); 1e9 parameters already need ~16 GB for weights, gradients and Adam's states.
MAX_PARAMETERS = 1_000_000_000
MAX_PARAMETER_TENSORS = 10_000  # also bounds the time the meta build takes
# Keys that load pretrained weights from a file: the network's size does not depend on them, and the
# size check reads no file.
_NO_WEIGHT_FILES = {"pretrained_encoder": False, "encoder_weights": ""}


class _TooLarge(Exception):
    pass


def check_network_size(kind: str, section: ArchConfig, source: str) -> int:
    """Refuse a `generator` / `discriminator` section describing more than `MAX_PARAMETERS` parameters
    or `MAX_PARAMETER_TENSORS` weight tensors, with a `ConfigError` naming its integer keys; returns the
    parameter count.

    The network is built on the `meta` device, and the build stops at the first parameter beyond
    either bound, so even a section declaring trillions of parameters costs neither memory nor time.
    """
    build = build_generator if kind == "generator" else build_discriminator
    cls = arch_table(kind).get(section.arch)
    no_files = {k: v for k, v in _NO_WEIGHT_FILES.items() if k in (arch_params(cls) if cls else {})}
    count = {"parameters": 0, "tensors": 0}

    def counted(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None:
            count["parameters"] += param.numel()
            count["tensors"] += 1
            if count["parameters"] > MAX_PARAMETERS or count["tensors"] > MAX_PARAMETER_TENSORS:
                raise _TooLarge

    handle = register_module_parameter_registration_hook(counted)
    try:
        with torch.device("meta"):
            _build(build, kind, section, source, **no_files)
    except _TooLarge:
        over = (f"more than {MAX_PARAMETERS:,} parameters" if count["parameters"] > MAX_PARAMETERS
                else f"more than {MAX_PARAMETER_TENSORS:,} weight tensors")
        raise ConfigError(f"{source}: {kind} ({section.arch}) would have {over}; {_size_keys(kind, section)}") from None
    except RuntimeError as e:  # e.g. a tensor size beyond int64
        raise ConfigError(f"{source}: {kind} ({section.arch}) cannot be built ({first_line(e)}); "
                          f"{_size_keys(kind, section)}") from None
    finally:
        handle.remove()
    return count["parameters"]


def _size_keys(kind: str, section: ArchConfig) -> str:
    """'make generator/num_feat 100000, generator/num_conv 1000 smaller': the section's integer (and
    integer-list) keys, largest first."""
    sizes = []
    for k, v in section.hparams.items():
        values = v if isinstance(v, (list, tuple)) else [v]
        ints = [n for n in values if isinstance(n, int) and not isinstance(n, bool)]
        if ints and len(ints) == len(values):
            sizes.append((max(ints), k, v))
    shown = ", ".join(f"{kind}/{k} {v}" for _, k, v in sorted(sizes, reverse=True)[:4])
    return f"make {shown} smaller" if shown else "choose smaller sizes"


def build_generator_from_config(cfg: TrainConfig) -> nn.Module:
    """The `generator` section's network, with the top-level `scale_factor` / `img_channels`."""
    return _build(build_generator, "generator", cfg.generator, cfg.source)


def build_discriminator_from_config(cfg: TrainConfig) -> nn.Module:
    """The `discriminator` section's network."""
    return _build(build_discriminator, "discriminator", cfg.discriminator, cfg.source)


def check_perceptual_weights_file(cfg: TrainConfig) -> None:
    """Refuse a missing ImageNet weights file of the `perceptual_loss` section before any training: the
    loss is built when its stage starts, which for ESRGAN's GAN stage is after the whole PSNR stage."""
    p = cfg.perceptual_loss
    if not p.pretrained:
        return
    if p.weights_path is not None:
        if not Path(p.weights_path).expanduser().is_file():
            raise CheckpointError(f"perceptual_loss/weights_path: {p.weights_path} is not a file")
        return
    file = VGG_WEIGHT_FILES[p.vgg_type] if p.network == "vgg" else RESNET18_WEIGHTS_FILE
    if not hub_weights_path(file).is_file():
        raise missing_weights_error(p.network_name, file, "perceptual_loss/weights_path")


def build_perceptual_loss_from_config(cfg: TrainConfig) -> PerceptualLoss:
    """The `perceptual_loss` section's loss (VGG or ResNet-18); a missing ImageNet file is an error saying where to put it."""
    p = cfg.perceptual_loss
    return build_perceptual_loss(
        p.layer_weights, p.vgg_type, p.criterion, p.normalize_input, p.normalize_loss, p.style_weights,
        p.pretrained, p.weights_path, p.network,
    )
