"""Training checkpoints and model files: what they hold, where they go, how they are read back.

A training checkpoint is a model file (`torch_sr_format`, `arch`, `hparams`, `state_dict`,
`state_dict_ema`, `meta`, so `load_model(checkpoint)` gives the generator) plus a `training`
entry with everything needed to continue exactly: both networks, optimisers, schedulers, grad
scalers, iteration, RNG states, data order and the config. Only tensors and plain containers are
stored, so `torch.load(weights_only=True)` (our `read_weights`) reads it; every write is atomic.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from torch_sr.archs.registry import generator_arch
from torch_sr.files import atomic_torch_save, read_weights
from torch_sr.model_files.model_file import model_payload
from torch_sr.errors import CheckpointError
from torch_sr.archs.description import unwrap

TRAINING_KEY = "training"
TRAINING_FORMAT = 1
CHECKPOINT_SUFFIX = "_checkpoint.pth"
PREVIOUS_SUFFIX = "_checkpoint.previous.pth"
SOURCE_KEY = "source"  # added by read_checkpoint: the file a checkpoint was read from (never saved)
# Entries of `training` that every checkpoint has, and their types (ints are >= 0).
TRAINING_ENTRIES: dict[str, type] = {
    "config": dict, "rng": dict, "optimizers": dict, "schedulers": dict, "scalers": dict, "best": dict,
    "iteration": int, "stage_index": int, "step_offset": int,
}  # fmt: skip
TRAINING_ENTRY_WORDS = {dict: "a dict", int: "an integer >= 0"}


def checkpoint_path(output_dir: Path, prefix: str) -> Path:
    """`<prefix>_checkpoint.pth`: the stage's latest training state, overwritten in place."""
    return output_dir / f"{prefix}{CHECKPOINT_SUFFIX}"


def model_path(output_dir: Path, prefix: str, kind: str) -> Path:
    """`<prefix>_<kind>_model.pth`, kind 'best', 'final' or 'iter<N>' (a `-s` snapshot)."""
    return output_dir / f"{prefix}_{kind}_model.pth"


def model_file_payload(generator: nn.Module, ema: nn.Module | None, meta: dict[str, Any]) -> dict[str, Any]:
    """Our model-file dict of the generator, with the EMA weights (preferred by `load_model`) beside the raw ones."""
    net = unwrap(generator)
    payload = model_payload(generator_arch(net).name, dict(net.hparams), net.state_dict(), meta)
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
    """A training checkpoint's contents, with the file it came from under `SOURCE_KEY`; a model file,
    a foreign file or a damaged training state is a `CheckpointError` naming the file."""
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
    for key, kind in TRAINING_ENTRIES.items():
        value = training.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            found = "missing" if key not in training else f"{value!r}"[:60]
            raise CheckpointError(
                f"{path}: damaged training checkpoint: {key!r} is {found}, expected {TRAINING_ENTRY_WORDS[kind]}; "
                "continue from another checkpoint"
            )
    phase = training.get("phase")
    if phase is not None and (not isinstance(phase, int) or isinstance(phase, bool) or phase < 0):
        raise CheckpointError(f"{path}: damaged training checkpoint: 'phase' is {phase!r}")
    return {**obj, SOURCE_KEY: str(path)}


def checkpoints_newest_first(output_dir: Path) -> list[Path]:
    """The `*_checkpoint.pth` files in `output_dir`, the most recently written first."""
    found = [p for p in Path(output_dir).glob(f"*{CHECKPOINT_SUFFIX}") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def previous_checkpoint_path(path: Path) -> Path:
    """Where the checkpoint that `path` replaced is kept (`<prefix>_checkpoint.previous.pth`), so that a
    checkpoint whose weights turn out to give a non-finite loss can be swapped for the one before it."""
    return path.with_name(path.name[: -len(CHECKPOINT_SUFFIX)] + PREVIOUS_SUFFIX)


def keep_previous(path: Path) -> None:
    """Keep the current content of `path` (if any, and if it looks like PyTorch's zip format: a damaged
    file never replaces a kept one) as its previous checkpoint, without copying where the file system
    allows a hard link."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return
    previous = previous_checkpoint_path(path)
    link = previous.with_name(f".{previous.name}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:  # no hard links here: copy
        shutil.copyfile(path, link)
    os.replace(link, previous)


def remove_interrupted_writes(output_dir: Path) -> list[Path]:
    """Delete the temporary files (`.<name>.<random>.tmp`) that interrupted saves of model files and
    checkpoints left in `output_dir`; returns them."""
    stale = [p for p in Path(output_dir).glob(".*.pth.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
