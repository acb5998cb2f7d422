"""Loading another stage's (or phase's) weights into a network wherever the shapes still fit.

A later stage may change the network a little: progressive resizing adds an upsampling block when
it goes from x2 to x4, a new discriminator size changes one dense layer. Every tensor whose name
and shape match is copied; the rest keep their fresh initialisation and are listed, so the log
says exactly what was carried over.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class WeightTransfer:
    """What `load_fitting_weights` did, tensor by tensor."""

    loaded: list[str] = field(default_factory=list)
    reshaped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, file, model
    missing: list[str] = field(default_factory=list)  # in the model, not in the weights
    unexpected: list[str] = field(default_factory=list)  # in the weights, not in the model

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        if self.reshaped:
            name, old, new = self.reshaped[0]
            parts.append(f"{len(self.reshaped)} of other shapes kept fresh (e.g. {name}: {old} -> {new})")
        if self.missing:
            parts.append(f"{len(self.missing)} new in the model (e.g. {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} not in the model, dropped (e.g. {self.unexpected[0]})")
        return "; ".join(parts)


@torch.no_grad()
def load_fitting_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> WeightTransfer:
    """Copy every tensor of `state_dict` whose name and shape exist in `model`; report the rest."""
    report = WeightTransfer()
    own = model.state_dict()
    for name, target in own.items():
        if name not in state_dict:
            report.missing.append(name)
        elif state_dict[name].shape != target.shape:
            report.reshaped.append((name, tuple(state_dict[name].shape), tuple(target.shape)))
        else:
            target.copy_(state_dict[name])
            report.loaded.append(name)
    report.unexpected = [name for name in state_dict if name not in own]
    return report
