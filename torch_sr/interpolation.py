"""Network interpolation (ESRGAN): blend two models of one architecture parameter by parameter.

theta = (1 - alpha) theta_A + alpha theta_B trades the PSNR model's fidelity (alpha = 0) against
the GAN model's texture (alpha = 1) without retraining. Both files are read into the canonical
layout first, so any two accepted layouts of the same network can be mixed.
"""
from __future__ import annotations

import inspect
import json
import math
from typing import Any

import torch

from torch_sr.archs.registry import GENERATORS
from torch_sr.model_files.model_file import ModelFile
from torch_sr.errors import CheckpointError, ConfigError


def _full_hparams(mf: ModelFile) -> dict[str, Any]:
    """Hyper-parameters with the constructor defaults filled in (tuples as lists, as JSON stores them),
    so that equal networks compare equal."""
    params = inspect.signature(GENERATORS[mf.arch].cls).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    return json.loads(json.dumps({**defaults, **mf.hparams}))


def check_same_architecture(a: ModelFile, b: ModelFile) -> None:
    """Raise a CheckpointError naming the first hyper-parameter or tensor in which `a` and `b` differ."""
    if a.arch != b.arch:
        raise CheckpointError(f"{a.source} is a {a.arch} but {b.source} is a {b.arch}; both must be the same network")
    ha, hb = _full_hparams(a), _full_hparams(b)
    for key in sorted(ha.keys() | hb.keys()):
        if ha.get(key) != hb.get(key):
            raise CheckpointError(
                f"{a.source} and {b.source} are different {a.arch} networks: hyper-parameter {key!r} is "
                f"{ha.get(key)!r} vs {hb.get(key)!r}"
            )
    for key in [*a.state_dict, *(k for k in b.state_dict if k not in a.state_dict)]:
        ta, tb = a.state_dict.get(key), b.state_dict.get(key)
        if ta is None or tb is None:
            missing_in = a.source if ta is None else b.source
            raise CheckpointError(f"tensor {key!r} is missing from {missing_in}; both models need the same tensors")
        if ta.shape != tb.shape:
            raise CheckpointError(
                f"tensor {key!r} has shape {tuple(ta.shape)} in {a.source} but {tuple(tb.shape)} in {b.source}"
            )


def interpolate_models(a: ModelFile, b: ModelFile, alpha: float) -> ModelFile:
    """(1 - alpha) * a + alpha * b for every floating-point tensor; others come from the nearer model."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0 <= alpha <= 1):
        raise ConfigError(f"alpha must be between 0 and 1 (0 = the first model, 1 = the second), got {alpha}")
    check_same_architecture(a, b)
    mixed = {}
    for key, ta in a.state_dict.items():
        tb = b.state_dict[key]
        if ta.is_floating_point():
            mixed[key] = torch.lerp(ta.double(), tb.double(), alpha).to(ta.dtype)
        else:
            mixed[key] = (ta if alpha < 0.5 else tb).clone()
    meta = {"interpolation": {"alpha": alpha, "model_a": a.source, "model_b": b.source}}
    return ModelFile(a.arch, _full_hparams(a), mixed, meta, source=f"interpolation of {a.source} and {b.source}")
