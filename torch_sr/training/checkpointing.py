"""Training checkpoints and model files: what they hold, where they go, how they are read back.

A training checkpoint is a model file (`torch_sr_format`, `arch`, `hparams`, `state_dict`,
`state_dict_ema`, `meta`, so `load_model(checkpoint)` gives the generator) plus a `training`
entry with everything needed to continue exactly: both networks, optimisers, schedulers, grad
scalers, iteration, RNG states, data order and the config. Only tensors and plain containers are
stored, so `torch.load(weights_only=True)` (our `read_weights`) reads it; every write is atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from torch_sr.checkpoint.files import atomic_torch_save, read_weights
from torch_sr.checkpoint.model_file import model_payload
from torch_sr.errors import CheckpointError
from torch_sr.training.ema import unwrap

TRAINING_KEY = "training"
TRAINING_FORMAT = 1
CHECKPOINT_SUFFIX = "_checkpoint.pth"


def checkpoint_path(output_dir: Path, prefix: str) -> Path:
    """`<prefix>_checkpoint.pth`: the stage's latest training state, overwritten in place."""
    return output_dir / f"{prefix}{CHECKPOINT_SUFFIX}"


def model_path(output_dir: Path, prefix: str, kind: str) -> Path:
    """`<prefix>_<kind>_model.pth`, kind 'best', 'final' or 'iter<N>' (a `-s` snapshot)."""
    return output_dir / f"{prefix}_{kind}_model.pth"


def model_file_payload(generator: nn.Module, ema: nn.Module | None, meta: dict[str, Any]) -> dict[str, Any]:
    """Our model-file dict of the generator, with the EMA weights (preferred by `load_model`) beside the raw ones."""
    net = unwrap(generator)
    payload = model_payload(net.arch_name, dict(net.hparams), net.state_dict(), meta)
    if ema is not None:
        payload["state_dict_ema"] = {k: v.detach().cpu() for k, v in ema.state_dict().items()}
    return payload


def save_model_file(path: Path, generator: nn.Module, ema: nn.Module | None, meta: dict[str, Any]) -> Path:
    return atomic_torch_save(model_file_payload(generator, ema, meta), path)


def save_checkpoint(
    path: Path, generator: nn.Module, ema: nn.Module | None, meta: dict[str, Any], training: dict[str, Any]
) -> Path:
    payload = model_file_payload(generator, ema, meta)
    payload[TRAINING_KEY] = {"format": TRAINING_FORMAT, **training}
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint's contents; a model file or a foreign file is a clear error."""
    obj, _ = read_weights(path)
    training = obj.get(TRAINING_KEY) if isinstance(obj, dict) else None
    if not isinstance(training, dict):
        raise CheckpointError(
            f"{path}: not a training checkpoint (it holds no training state, only weights); continue a run from "
            f"its <...>{CHECKPOINT_SUFFIX} file in the output directory"
        )
    version = training.get("format")
    if not isinstance(version, int) or version > TRAINING_FORMAT:
        raise CheckpointError(f"{path}: training state format {version!r} is newer than this library reads")
    return obj


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The most recently written `*_checkpoint.pth` in `output_dir`, if any."""
    found = [p for p in Path(output_dir).glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns, default=None)
