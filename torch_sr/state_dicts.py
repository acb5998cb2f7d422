"""State dicts as files hold them: finding the tensors inside wrappers, and loading with readable errors.

Used by every reader of weights (model files, the VGG/ResNet feature networks, training checkpoints),
so it depends on nothing in torch_sr but the errors.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torch_sr.errors import CheckpointError

StateDict = dict[str, torch.Tensor]
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "generator", "netG", "model_state_dict")
PREFIXES = ("module.", "_orig_mod.")


def check_state_dict_fits(model: nn.Module, sd: StateDict, source: str = "state dict") -> None:
    """Raise a `CheckpointError` explaining in one sentence how `sd` does not fit `model` (any device)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensor(s) have other shapes, e.g. {k!r}: file {tuple(sd[k].shape)}, "
                f"model {tuple(expected[k].shape)}"
            )
        if missing:
            parts.append(f"{len(missing)} tensor(s) the model needs are absent, e.g. {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} tensor(s) in the file are unknown to the model, e.g. {unexpected[0]!r}")
        hp = getattr(model, "hparams", {})
        raise CheckpointError(f"{source}: weights do not fit {type(model).__name__}({hp}): " + "; ".join(parts))


def load_state_dict_checked(model: nn.Module, sd: StateDict, source: str = "state dict") -> None:
    """`model.load_state_dict(sd)` that explains a mismatch in one sentence instead of a key dump."""
    check_state_dict_fits(model, sd, source)
    model.load_state_dict(sd)


def is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state_dict(obj: Any, source: str = "file", prefer_ema: bool = True) -> StateDict:
    """Find the tensors inside common wrappers and strip DataParallel/compile prefixes.

    A BasicSR/Real-ESRGAN file holding both `params_ema` and `params` gives the EMA weights unless
    `prefer_ema` is false."""
    wrappers = WRAPPER_KEYS if prefer_ema else ("params", *(k for k in WRAPPER_KEYS if k != "params"))
    for _ in range(4):
        if is_state_dict(obj):
            break
        if not isinstance(obj, dict):
            raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
        key = next((k for k in wrappers if k in obj and isinstance(obj[k], dict)), None)
        if key is None:
            found = ", ".join(repr(k) for k in list(obj)[:8])
            raise CheckpointError(
                f"{source}: no weights found: top-level keys are {found}; expected a state dict of tensors, "
                f"or one wrapped under one of {', '.join(WRAPPER_KEYS)}"
            )
        obj = obj[key]
    else:
        raise CheckpointError(f"{source}: weights nested too deeply to find")
    sd = {}
    for key, value in obj.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        while prefix is not None:  # in any order and number: torch.compile(DDP(m)) gives "_orig_mod.module."
            key = key[len(prefix) :]
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        sd[key] = value
    return sd
