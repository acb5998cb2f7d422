"""The networks and the perceptual loss a config describes, with errors worded for the config."""
from __future__ import annotations

from torch import nn

from torch_sr.archs.registry import build_discriminator, build_generator
from torch_sr.config.schema import ArchConfig, TrainConfig
from torch_sr.errors import ConfigError
from torch_sr.losses.perceptual import PerceptualLoss, build_perceptual_loss


def _build(build, kind: str, section: ArchConfig, source: str) -> nn.Module:
    try:
        return build(section.arch, **section.kwargs)
    except (TypeError, ValueError) as e:  # the constructor's own range checks
        raise ConfigError(f"{source}: {kind} ({section.arch}): {e}") from None


def build_generator_from_config(cfg: TrainConfig) -> nn.Module:
    """The `generator` section's network, with the top-level `scale_factor` / `img_channels`."""
    return _build(build_generator, "generator", cfg.generator, cfg.source)


def build_discriminator_from_config(cfg: TrainConfig) -> nn.Module:
    """The `discriminator` section's network."""
    return _build(build_discriminator, "discriminator", cfg.discriminator, cfg.source)


def build_perceptual_loss_from_config(cfg: TrainConfig) -> PerceptualLoss:
    """The `perceptual_loss` section's loss (VGG or ResNet-18); a missing ImageNet file is an error saying where to put it."""
    p = cfg.perceptual_loss
    return build_perceptual_loss(
        p.layer_weights, p.vgg_type, p.criterion, p.normalize_input, p.normalize_loss, p.style_weights,
        p.pretrained, p.weights_path, p.network,
    )
