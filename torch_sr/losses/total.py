"""The total generator loss: a weighted sum of named loss terms."""
from __future__ import annotations

from collections.abc import Mapping

import torch


def total_loss(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """sum(weights[k] * terms[k]) over the non-zero weights.

    With a stage's `loss_weights` (`torch_sr.config.schema`) this is ESRGAN's
    L_percep + g_adversarial_loss_scaling * L_G^Ra + g_content_loss_scaling * L_1. A term whose
    weight is 0 need not be computed at all; one with a non-zero weight must be present, and a
    term without a weight is an error (it would silently not train).
    """
    unweighted = sorted(set(terms) - set(weights))
    missing = sorted(k for k, w in weights.items() if w != 0 and k not in terms)
    if unweighted or missing:
        raise KeyError(f"loss terms without a weight: {unweighted}; weighted terms not computed: {missing}")
    active = [weights[k] * v for k, v in terms.items() if weights[k] != 0]
    if not active:
        raise ValueError(f"every loss weight is 0 ({dict(weights)}): nothing to train")
    return sum(active[1:], active[0])
