"""Weight initialisation shared by the generators."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def scaled_kaiming_init_(modules: Iterable[nn.Module], scale: float = 1.0) -> None:
    """Kaiming-normal (fan-in) conv/linear weights times `scale`, zero bias.

    ESRGAN scales by 0.1 inside residual blocks so that the untrained network starts close to the
    identity on its trunk, which keeps deep stacks stable without batch norm.
    """
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.mul_(scale)
            if m.bias is not None:
                m.bias.zero_()
