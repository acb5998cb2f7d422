"""GAN losses on raw discriminator logits: relativistic average (ESRGAN), vanilla (SRGAN), LSGAN, hinge.

Each loss is a pair of functions of `(real_logits, fake_logits)`: `d_loss` for the discriminator
step (pass logits of detached generator outputs) and `g_loss` for the generator step. Sigmoids are
folded into `binary_cross_entropy_with_logits`, which stays finite for any logit.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from torch_sr.errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def ragan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(BCE(C(x_r) - E[C(x_f)], 1) + BCE(C(x_f) - E[C(x_r)], 0)) / 2.

    The paper's L_D^Ra halved, as in the official ESRGAN code, whose weights (lambda = 5e-3) the
    defaults reproduce.
    """
    return (_bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0)) / 2


def ragan_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(BCE(C(x_r) - E[C(x_f)], 0) + BCE(C(x_f) - E[C(x_r)], 1)) / 2: the symmetric form.

    The real logits are detached: the generator step does not train the discriminator.
    """
    real = real.detach()
    return (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0)) / 2


def vanilla_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """BCE(C(x_r), 1) + BCE(C(x_f), 0) = -log D(x_r) - log(1 - D(x_f)) (SRGAN)."""
    return _bce(real, 1.0) + _bce(fake, 0.0)


def vanilla_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """BCE(C(x_f), 1) = -log D(G(z)), the non-saturating generator loss (SRGAN)."""
    return _bce(fake, 1.0)


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(E[(C(x_r) - 1)^2] + E[C(x_f)^2]) / 2 (Mao et al. 2017, a=0, b=c=1)."""
    return ((real - 1).square().mean() + fake.square().mean()) / 2


def lsgan_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(C(x_f) - 1)^2] / 2."""
    return (fake - 1).square().mean() / 2


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[max(0, 1 - C(x_r))] + E[max(0, 1 + C(x_f))]."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-E[C(x_f)]."""
    return -fake.mean()


class AdversarialLoss(NamedTuple):
    """A GAN loss: the discriminator's and the generator's functions of `(real_logits, fake_logits)`."""

    d_loss: LossFn
    g_loss: LossFn


ADVERSARIAL_LOSSES = {
    "ragan": AdversarialLoss(ragan_d_loss, ragan_g_loss),
    "vanilla": AdversarialLoss(vanilla_d_loss, vanilla_g_loss),
    "lsgan": AdversarialLoss(lsgan_d_loss, lsgan_g_loss),
    "hinge": AdversarialLoss(hinge_d_loss, hinge_g_loss),
}


def get_adversarial_loss(name: str = "ragan") -> AdversarialLoss:
    """The loss pair by its config name (`adversarial_loss/loss_f`)."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown adversarial loss {name!r}; choose one of {', '.join(ADVERSARIAL_LOSSES)}") from None
