"""Exponential moving average of the generator's weights (BasicSR's `net_g_ema`).

The averaged copy is what validation scores and what `load_model` loads from our files (their
`state_dict_ema`); the raw weights are saved beside it. Parameters and floating-point buffers
(batch-norm statistics) are averaged; integer buffers are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel wrappers."""
    return getattr(model, "module", model)


class ModelEMA:
    """`ema = decay * ema + (1 - decay) * weights`, after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = unwrap(model).state_dict()
        ema_state = self.module.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        torch._foreach_lerp_([ema_state[k] for k in floats], [current[k] for k in floats], 1.0 - self.decay)
        for key, value in ema_state.items():
            if not value.is_floating_point():
                value.copy_(current[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
