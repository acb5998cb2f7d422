"""The generator's loss terms as data: a name, where its weight is in each stage's config, and a builder.

A stage's objective (`torch_sr.training.objective.Objective`) loops over these terms: it builds the
ones whose weight is not zero and computes them in this order. Adding a loss is a module in
`torch_sr/losses/`, one `LossTerm` here, and its weight key (with help text) on the stage sections
that may use it in `torch_sr/config/schema.py`; nothing in the training loop changes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch_sr.config.schema import TrainConfig

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (sr, hr) -> scalar loss


@dataclass(frozen=True)
class LossTerm:
    """One generator loss term: its weight key per stage section and how to build its (sr, hr) -> loss function.

    `build` is None for the adversarial term, which the training loop computes with the discriminator.
    """

    weight_keys: Mapping[str, str]  # "pretraining" / "training" -> the weight's key in that section
    build: Callable[[TrainConfig, torch.device], Term] | None
    help: str


def _content(cfg: TrainConfig, device: torch.device) -> Term:
    from torch_sr.losses.content import build_content_loss

    c = cfg.content_loss
    return build_content_loss(c.loss_f, c.charbonnier_eps, c.y_weight)


def _perceptual(cfg: TrainConfig, device: torch.device) -> Term:
    from torch_sr.config.build import build_perceptual_loss_from_config

    return build_perceptual_loss_from_config(cfg).to(device).eval()


def _tv(cfg: TrainConfig, device: torch.device) -> Term:
    from torch_sr.losses.total_variation import total_variation

    return lambda sr, hr: total_variation(sr)


def _checkerboard(cfg: TrainConfig, device: torch.device) -> Term:
    from torch_sr.losses.checkerboard import checkerboard_loss

    scale = cfg.scale_factor
    return lambda sr, hr: checkerboard_loss(sr, hr, scale)


LOSS_TERMS: dict[str, LossTerm] = {
    "content": LossTerm(
        {"pretraining": "content_loss_scaling", "training": "g_content_loss_scaling"}, _content,
        "pixel loss (content_loss section)",
    ),
    "perceptual": LossTerm(
        {"pretraining": "perceptual_loss_scaling", "training": "g_perceptual_loss_scaling"}, _perceptual,
        "feature-space loss (perceptual_loss section)",
    ),
    "adversarial": LossTerm({"training": "g_adversarial_loss_scaling"}, None, "the discriminator's verdict"),
    "tv": LossTerm({"pretraining": "tv_loss_scaling", "training": "g_tv_loss_scaling"}, _tv, "total variation"),
    "checkerboard": LossTerm({"training": "g_checkerboard_loss_scaling"}, _checkerboard, "sub-pixel grid pattern"),
}  # fmt: skip


def stage_loss_weights(section: Any, kind: str) -> dict[str, float]:
    """Term name -> weight, for the terms a `kind` ('pretraining' / 'training') section can weight."""
    return {name: getattr(section, t.weight_keys[kind]) for name, t in LOSS_TERMS.items() if kind in t.weight_keys}
