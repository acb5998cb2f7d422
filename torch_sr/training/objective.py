"""What one stage optimises: the generator's weighted loss terms and the discriminator's loss.

The terms are those of `torch_sr.losses.registry`; a term with a zero weight is never built or
computed (a stage without a perceptual weight builds no VGG). The "image" terms compare an output
with its HR image and need no discriminator, so validation scores them too.
"""
from __future__ import annotations

import torch
from torch import nn

from torch_sr.config.schema import TrainConfig
from torch_sr.losses.adversarial import AdversarialLoss, get_adversarial_loss
from torch_sr.losses.registry import LOSS_TERMS, Term


class Objective:
    """The loss of one stage (`section` is `cfg.pretraining` or `cfg.training`).

    `weights` are the section's `loss_weights`; `adversarial` is None in a stage without a
    discriminator. Build it with the global RNG forked and seeded when the VGG is random.
    """

    def __init__(self, cfg: TrainConfig, section: object, adversarial: bool, device: torch.device):
        self.weights: dict[str, float] = dict(section.loss_weights)  # type: ignore[attr-defined]
        self.scale = cfg.scale_factor  # the output's pixel grid (validation tiles align to it)
        if not adversarial:
            self.weights.pop("adversarial", None)
        self.image: dict[str, Term] = {
            name: LOSS_TERMS[name].build(cfg, device)  # type: ignore[misc]  (image terms have a builder)
            for name, weight in self.weights.items()
            if weight and LOSS_TERMS[name].build is not None
        }
        self.adversarial: AdversarialLoss | None = None
        self.d_shift = 0  # pixels the discriminator's window is smaller than the crop (see `loop.random_window`)
        if adversarial:
            self.adversarial = get_adversarial_loss(cfg.adversarial_loss.loss_f)
            self.d_shift = section.d_shift  # type: ignore[attr-defined]  (adversarial stages are `training` sections)

    def modules(self) -> list[nn.Module]:
        """The terms that are networks (the perceptual loss's feature extractor), e.g. to set their memory format."""
        return [term for term in self.image.values() if isinstance(term, nn.Module) and any(True for _ in term.parameters())]

    @property
    def image_weights(self) -> dict[str, float]:
        """The weights of the terms that need no discriminator."""
        return {k: w for k, w in self.weights.items() if LOSS_TERMS[k].build is not None}

    def image_terms(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unweighted image terms that have a non-zero weight, in the registry's order."""
        return {name: term(sr, hr) for name, term in self.image.items()}
