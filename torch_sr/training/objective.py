"""What one stage optimises: the generator's weighted loss terms and the discriminator's loss.

Terms with a zero weight are never computed (a stage without a perceptual weight builds no VGG).
The "image" terms (content, perceptual, total variation) compare an output with its HR image and
need no discriminator, so validation scores them too.
"""
from __future__ import annotations

import torch
from torch import nn

from torch_sr.config.build import build_perceptual_loss_from_config
from torch_sr.config.schema import TrainConfig
from torch_sr.losses.adversarial import AdversarialLoss, get_adversarial_loss
from torch_sr.losses.checkerboard import checkerboard_loss
from torch_sr.losses.content import build_content_loss
from torch_sr.losses.total_variation import total_variation

IMAGE_TERMS = ("content", "perceptual", "tv", "checkerboard")


class Objective:
    """The loss of one stage (`section` is `cfg.pretraining` or `cfg.training`).

    `weights` are the section's `loss_weights`; `adversarial` is None in a stage without a
    discriminator. Build it with the global RNG forked and seeded when the VGG is random.
    """

    def __init__(self, cfg: TrainConfig, section: object, adversarial: bool, device: torch.device):
        self.weights: dict[str, float] = dict(section.loss_weights)  # type: ignore[attr-defined]
        self.scale = cfg.scale_factor
        if not adversarial:
            self.weights.pop("adversarial", None)
        loss = cfg.content_loss
        self.content = build_content_loss(loss.loss_f, loss.charbonnier_eps, loss.y_weight)
        self.perceptual: nn.Module | None = None
        if self.weights.get("perceptual"):
            self.perceptual = build_perceptual_loss_from_config(cfg).to(device).eval()
        self.adversarial: AdversarialLoss | None = None
        self.d_shift = 0  # pixels the discriminator's window is smaller than the crop (see `loop.random_window`)
        if adversarial:
            self.adversarial = get_adversarial_loss(cfg.adversarial_loss.loss_f)
            self.d_shift = section.d_shift  # type: ignore[attr-defined]  (adversarial stages are `training` sections)

    @property
    def image_weights(self) -> dict[str, float]:
        """The weights of the terms that need no discriminator."""
        return {k: w for k, w in self.weights.items() if k in IMAGE_TERMS}

    def image_terms(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted content / perceptual / TV / checkerboard terms that have a non-zero weight."""
        terms = {}
        if self.weights.get("content"):
            terms["content"] = self.content(sr, hr)
        if self.perceptual is not None:
            terms["perceptual"] = self.perceptual(sr, hr)
        if self.weights.get("tv"):
            terms["tv"] = total_variation(sr)
        if self.weights.get("checkerboard"):
            terms["checkerboard"] = checkerboard_loss(sr, hr, self.scale)
        return terms
