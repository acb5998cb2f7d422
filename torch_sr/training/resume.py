"""Which checkpoint a run continues from, and whether the given config still describes it.

A run resumes with the config stored in its checkpoint. A config given on the command line may
differ from it only in settings that do not change what the run computes (`MAY_CHANGE`): how long
the stages are, what is validated, how often and in what tiles, data loading, the torchrun
timeout, logging, the description and where the VGG weights file lives. Any other difference is
an error naming each key, because the resumed run would no longer be the run that was
checkpointed (and would not resume exactly).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch_sr.config.schema import TrainConfig
from torch_sr.config.validate import config_to_dict, validate_config
from torch_sr.errors import CheckpointError, ConfigError
from torch_sr.training.checkpointing import latest_checkpoint, read_checkpoint

MAY_CHANGE = (
    "description",
    "pretraining/num_epoch",
    "pretraining/num_iterations",
    "pretraining/val_datasets",
    "pretraining/val_interval",
    "training/num_epoch",
    "training/num_iterations",
    "training/val_datasets",
    "training/val_interval",
    "data/",
    "distributed/timeout_minutes",
    "val_loss_tile",
    "logging/",
    "perceptual_loss/weights_path",
)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value and not key.endswith("_weights"):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def may_change(key: str) -> bool:
    """Whether a resumed run may take a new value of this key path (see `MAY_CHANGE`)."""
    return any(key == p or (p.endswith("/") and key.startswith(p)) for p in MAY_CHANGE)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{key path: (saved value, current value)}` of every key whose value differs."""
    a, b = _flatten(saved), _flatten(current)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resumable(saved: Mapping[str, Any], cfg: TrainConfig, checkpoint: Path) -> None:
    """Raise a `ConfigError` naming the keys where `cfg` differs from the checkpoint's config in a way that matters.

    The saved config is first completed with today's defaults, so a checkpoint written before a key
    existed resumes under a config that leaves that key at its default (which is what the old run did).
    """
    completed = config_to_dict(validate_config(saved, f"{checkpoint} (stored config)"))
    differences = config_differences(completed, config_to_dict(cfg))
    forbidden = {k: v for k, v in differences.items() if not may_change(k)}
    if forbidden:
        lines = [f"{k}: checkpoint {old!r}, config {new!r}" for k, (old, new) in forbidden.items()]
        raise ConfigError(
            f"{cfg.source}: differs from the config of the checkpoint {checkpoint} in settings a resumed run cannot "
            "change:\n  " + "\n  ".join(lines) + "\nResume without a config to use the checkpoint's, or start a "
            "new run."
        )


def find_checkpoint(load_checkpoint: Path | None, resume: bool, output_dir: Path) -> Path | None:
    """`--load-checkpoint PATH`, or with `--resume` the newest checkpoint in the output directory (None if none)."""
    if load_checkpoint is not None:
        if not Path(load_checkpoint).is_file():
            raise CheckpointError(f"checkpoint not found: {load_checkpoint}")
        return Path(load_checkpoint)
    if resume:
        return latest_checkpoint(output_dir)
    return None


def resume_config(checkpoint_path: Path, cfg: TrainConfig | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The config to continue with (the given one if compatible, else the checkpoint's) and the checkpoint."""
    checkpoint = read_checkpoint(checkpoint_path)
    saved = checkpoint["training"]["config"]
    if cfg is None:
        return validate_config(saved, f"{checkpoint_path} (stored config)"), checkpoint
    check_resumable(saved, cfg, checkpoint_path)
    return cfg, checkpoint
