"""Exponential moving average of the generator's weights (BasicSR's `net_g_ema`).

The averaged copy is what validation scores and what `load_model` loads from our files (their
`state_dict_ema`); the raw weights are saved beside it. Parameters and floating-point buffers
(batch-norm statistics) are averaged; integer buffers are copied. The decay warms up as
TensorFlow's `ExponentialMovingAverage(num_updates=...)`: `min(decay, (1 + n) / (10 + n))` after
`n` updates. Without it a 0.999 average still holds 37% of the random initial weights after 1000
iterations, so early validation (and the best-model choice) scores noise.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from torch_sr.archs.description import unwrap


class ModelEMA:
    """`ema = d * ema + (1 - d) * weights` after every optimiser step, `d` the warmed-up decay."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def decay_at(self, updates: int) -> float:
        """The decay of the update that follows `updates` earlier ones."""
        return min(self.decay, (1 + updates) / (10 + updates))

    @torch.no_grad()
    def update(self, model: nn.Module, updates: int) -> None:
        """Average in `model`'s weights; `updates` is how many updates came before (the stage's iteration)."""
        current = unwrap(model).state_dict()
        ema_state = self.module.state_dict()
        floats = [k for k, v in ema_state.items() if v.is_floating_point()]
        weight = 1.0 - self.decay_at(updates)
        torch._foreach_lerp_([ema_state[k] for k in floats], [current[k] for k in floats], weight)
        for key, value in ema_state.items():
            if not value.is_floating_point():
                value.copy_(current[key])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
