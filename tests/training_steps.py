"""`assert_trains`: a few optimiser steps on a loss, and the checks every "it learns" test makes."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

import torch
from torch import nn


def assert_trains(
    loss_fn: Callable[[], torch.Tensor],
    params: nn.Module | Iterable[torch.Tensor],
    *,
    steps: int = 5,
    lr: float = 1e-3,
    below: float = 1.0,
    no_gradient: Collection[str] = (),
) -> list[float]:
    """Adam at `lr` on `params` for `steps` steps of `loss_fn()`; the losses before each step.

    Fails unless the first backward pass gives every trainable parameter a non-zero gradient (those
    of a module named in `no_gradient` excepted: they are not checked), and the last loss is below
    `below` times the first. A module's parameters that do not require gradients stay untouched.
    """
    if isinstance(params, nn.Module):
        named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    else:
        named = [(f"params[{k}]", p) for k, p in enumerate(params)]
    opt = torch.optim.Adam([p for _, p in named], lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        if not losses:
            silent = [n for n, p in named if n not in no_gradient and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not silent, f"no gradient reaches {silent}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < below * losses[0], f"the loss did not fall below {below} x its first value: {losses}"
    return losses
