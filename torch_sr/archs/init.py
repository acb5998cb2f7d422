"""Weight initialisation shared by the generators."""
from __future__ import annotations

from collections.abc import Callable, Iterable

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


@torch.no_grad()
def icnr_(conv: nn.Conv2d, upscale: int = 2, init: Callable[[torch.Tensor], object] = nn.init.kaiming_normal_) -> None:
    """ICNR (Aitken et al. 2017) for a conv followed by `pixel_shuffle(upscale)`.

    `init` fills one kernel per output channel of the shuffle, and each is repeated for the
    `upscale**2` sub-pixels of its group (bias zeroed), so at initialisation the convolution +
    shuffle equals nearest-neighbour upsampling of a conv: no checkerboard artefacts to unlearn.
    """
    groups = upscale * upscale
    out_ch = conv.weight.shape[0]
    if out_ch % groups:
        raise ValueError(f"ICNR needs output channels divisible by upscale**2 = {groups}, got {out_ch}")
    sub = torch.empty(out_ch // groups, *conv.weight.shape[1:], dtype=conv.weight.dtype, device=conv.weight.device)
    init(sub)
    conv.weight.copy_(sub.repeat_interleave(groups, dim=0))  # pixel_shuffle reads channel c*g + k for sub-pixel k
    if conv.bias is not None:
        conv.bias.zero_()
