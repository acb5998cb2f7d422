"""Which checkpoint a run continues from, and whether the given config still describes it.

A run resumes with the config stored in its checkpoint. A config given on the command line may
differ from it only in settings that do not change what the run computes (`MAY_CHANGE`): how long
the stages are, what is validated, how often and in what tiles, data loading, the torchrun
timeout, logging, the description and where the VGG weights file lives, and the learning rates and
gradient clipping (what a non-finite loss asks to change). Any other difference is an error naming
each key, because the resumed run would no longer be the run that was checkpointed (and would not
resume exactly). A checkpoint is checked before any data loads: its RNG state, its stage and
iteration against the config.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch_sr.config.schema import TrainConfig
from torch_sr.config.validate import config_to_dict, validate_config
from torch_sr.errors import CheckpointError, ConfigError
from torch_sr.training.checkpointing import checkpoints_newest_first, previous_checkpoint_path, read_checkpoint
from torch_sr.training.rng import rng_state, set_rng_state
from torch_sr.training.stages import build_stages

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
    # what a NaN/inf loss asks to change: the run then continues with the new value
    "pretraining/lr",
    "pretraining/grad_clip_norm",
    "training/g_lr",
    "training/d_lr",
    "training/grad_clip_norm",
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


def check_resumable(saved: Mapping[str, Any], cfg: TrainConfig, checkpoint: Path) -> dict[str, tuple[Any, Any]]:
    """Raise a `ConfigError` naming the keys where `cfg` differs from the checkpoint's config in a way that matters;
    return the differences that are allowed (`{key path: (checkpoint value, config value)}`).

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
    return differences


def find_checkpoint(
    load_checkpoint: Path | None, resume: bool, output_dir: Path, warn: Callable[[str], None] = print
) -> tuple[Path, dict[str, Any]] | None:
    """`--load-checkpoint PATH`, or with `--resume` the newest readable checkpoint in the output directory
    (None if there is none), and its contents.

    With `--resume`, an unreadable newest checkpoint is passed over for the previous readable one (the
    one it replaced, `<prefix>_checkpoint.previous.pth`, else an older stage's), saying so through `warn`.
    """
    if load_checkpoint is not None:
        if not Path(load_checkpoint).is_file():
            raise CheckpointError(f"checkpoint not found: {load_checkpoint}")
        return Path(load_checkpoint), read_checkpoint(load_checkpoint)
    if not resume:
        return None
    candidates = []
    for path in checkpoints_newest_first(output_dir):  # each followed by the one it replaced, if kept
        previous = previous_checkpoint_path(path)
        candidates += [path, previous] if previous.is_file() else [path]
    for k, path in enumerate(candidates):
        try:
            found = path, read_checkpoint(path)
        except CheckpointError as e:
            if k == len(candidates) - 1:
                raise CheckpointError(f"no readable checkpoint in {output_dir}: {e}") from None
            warn(f"warning: skipping the newest checkpoint, which is unreadable: {e}")
            continue
        if k:
            warn(f"warning: continuing from the previous readable checkpoint {path}")
        return found
    return None


def check_rng_state(state: Any, source: str) -> None:
    """Refuse RNG states that cannot be restored (tried, then the current state is put back)."""
    current = rng_state()
    try:
        set_rng_state(state)
    except Exception as e:  # noqa: BLE001 - random/numpy/torch each reject garbage their own way
        raise CheckpointError(f"{source}: damaged training checkpoint: its RNG state cannot be restored ({e})") from None
    finally:
        set_rng_state(current)


def check_position(checkpoint: dict[str, Any], cfg: TrainConfig, source: str) -> None:
    """Refuse a checkpoint whose stage/phase is not one of the config's stages, or whose iteration is past the
    stage's end (a run would otherwise 'finish' without training)."""
    t = checkpoint["training"]
    order = (t["stage_index"], t.get("phase") or 0)
    stage = next((s for s in build_stages(cfg) if s.order == order), None)
    if stage is None:
        known = ", ".join(f"{s.name} (stage {s.index}, phase {s.phase or 0})" for s in build_stages(cfg))
        raise CheckpointError(
            f"{source}: checkpoint of stage {order[0]}, phase {order[1]}, which the config does not have "
            f"(its stages: {known}); continue from a checkpoint of this run's config"
        )
    total = stage.section.num_iterations
    if total is not None:
        check_iteration(t["iteration"], total, stage.name, source)


def check_iteration(iteration: int, total: int, stage_name: str, source: str) -> None:
    if iteration > total:
        raise CheckpointError(
            f"{source}: checkpoint at iteration {iteration} of the {stage_name} stage, past its {total} iterations; "
            "give the stage more iterations to continue it"
        )


def resume_config(
    checkpoint_path: Path, cfg: TrainConfig | None, checkpoint: dict[str, Any] | None = None
) -> tuple[TrainConfig, dict[str, Any], dict[str, tuple[Any, Any]]]:
    """The config to continue with (the given one if compatible, else the checkpoint's), the checkpoint and
    the settings the given config changes (`{key path: (checkpoint value, config value)}`).

    Everything that can be checked before the data loads is: the stored config, the RNG state, the stage
    and iteration.
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(checkpoint_path)
    saved = checkpoint["training"]["config"]
    changed: dict[str, tuple[Any, Any]] = {}
    if cfg is None:
        cfg = validate_config(saved, f"{checkpoint_path} (stored config)")
    else:
        changed = check_resumable(saved, cfg, checkpoint_path)
    check_rng_state(checkpoint["training"]["rng"], str(checkpoint_path))
    check_position(checkpoint, cfg, str(checkpoint_path))
    return cfg, checkpoint, changed
