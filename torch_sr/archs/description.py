"""The one description of a generator that the rest of the library reads.

`GeneratorInfo` is what a built generator tells its callers (the upscaler, the ONNX exporter, the
CLIs): every generator sets `self.info` in its constructor, and custom models passed to `Upscaler`
do the same. `GeneratorArch` is what the registry knows about an architecture: its class, and how
to recognise a bare state dict of it and read its constructor arguments from the tensor shapes
(spandrel's idea), so detection lives with the architecture, not in the file reader.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GeneratorInfo:
    """What callers need to know about a built generator, whatever its architecture."""

    scale: int  # output height and width are `scale` times the input's
    in_channels: int
    out_channels: int
    size_multiple: int = 1  # input height and width must be multiples of this (callers pad)
    supports_half: bool = True  # computes in float16 without overflow (fp16 autocast, fp16 ONNX)


def _as_is(sd: StateDict) -> StateDict:
    return sd


@dataclass(frozen=True)
class GeneratorArch:
    """A registered generator architecture.

    `infer_hparams` gives the constructor arguments that reproduce a state dict in the class's own
    key layout, or None when the keys are not this architecture's; `canonical_keys` first renames
    other published layouts to the class's own (None: not this architecture).
    """

    name: str
    cls: type[nn.Module]
    infer_hparams: Callable[[StateDict], dict[str, Any] | None] = lambda sd: None
    canonical_keys: Callable[[StateDict], StateDict | None] = _as_is

    def read_state_dict(self, sd: StateDict) -> tuple[dict[str, Any], StateDict] | None:
        """(constructor arguments, state dict in our layout) when `sd` is this architecture's, else None."""
        canonical = self.canonical_keys(sd)
        if canonical is None:
            return None
        hparams = self.infer_hparams(canonical)
        return None if hparams is None else (hparams, canonical)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel wrappers (the model itself otherwise)."""
    return getattr(model, "module", model)


def generator_info(model: nn.Module) -> GeneratorInfo:
    """`model.info`, through DataParallel / DDP wrappers; a TypeError says what a custom model must set."""
    model = unwrap(model)
    info = getattr(model, "info", None)
    if not isinstance(info, GeneratorInfo):
        raise TypeError(
            f"{type(model).__name__} is not a torch_sr generator: it has no `info` "
            "(set `self.info = torch_sr.GeneratorInfo(scale=..., in_channels=..., out_channels=...)` in its constructor)"
        )
    return info
