"""`train(cfg, options)`: both stages of a run (and their phases), from scratch or from a checkpoint.

A stage is composed, not subclassed: the config's generator (and, in stage 2, discriminator),
the stage's `Objective` and its data go into a `TrainState` that `loop.train_stage` trains. Each
stage or phase after the first starts from what `load_model` would load from the previous one's
final model (the EMA weights when it kept an EMA, else the raw ones), copied with
`load_fitting_weights`, which lets a later stage or phase change the network where shapes allow
(progressive resizing: x2 -> x4 adds an upsampling step) and reports what it could not carry over.
"""
from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_sr.model_files.model_file import read_model_file
from torch_sr.config.build import (
    build_discriminator_from_config,
    build_generator_from_config,
    check_network_size,
    check_perceptual_weights_file,
)
from torch_sr.config.schema import TrainConfig
from torch_sr.device import configure_cuda
from torch_sr.errors import CheckpointError, ConfigError
from torch_sr.training.checkpointing import SOURCE_KEY, model_path
from torch_sr.training.data import build_train_set, build_val_sets, stage_iterations
from torch_sr.training.distributed import init_distributed, shutdown_distributed, wrap_model
from torch_sr.training.ema import ModelEMA
from torch_sr.training.loop import train_stage
from torch_sr.training.objective import Objective
from torch_sr.training.resume import check_iteration
from torch_sr.training.rng import derive_seed, set_rng_state
from torch_sr.training.session import Session, TrainOptions
from torch_sr.training.signals import stop_on_signals
from torch_sr.training.stages import Stage, build_stages
from torch_sr.training.state import TrainState, build_optimizers, network_seed, seeded
from torch_sr.training.transfer import load_fitting_weights


@dataclass
class RunResult:
    """Where the run left its files."""

    final_models: list[Path]
    checkpoint: Path | None
    run_dir: Path | None


def train(cfg: TrainConfig, options: TrainOptions, checkpoint: dict[str, Any] | None = None) -> RunResult:
    """Run the stages of `cfg` (continuing `checkpoint`, a `read_checkpoint` result, when given).

    Raises `TrainingStopped` when a signal or `options.stop_after` ends it early (a checkpoint is
    written first) and `NonFiniteLossError` when a loss becomes NaN/inf.
    """
    ctx = init_distributed(torch.device(options.device), cfg.distributed.timeout_minutes)
    try:
        if ctx.device.type == "cuda":
            configure_cuda(options.deterministic)
        if checkpoint is None:
            _seed_global_rngs(derive_seed(cfg.seed, "global"))
        t = checkpoint["training"] if checkpoint is not None else {}
        timestamp = int(t.get("timestamp") or time.time())
        run_name = options.run_name or cfg.logging.run_name or t.get("run_name") or _default_run_name(cfg, timestamp)
        # what a killed run logged after its checkpoint's step (TensorBoard hides steps >= purge_step)
        purge = t["step_offset"] + t["iteration"] + 1 if t else None
        with stop_on_signals() as stop:
            session = Session(cfg, options, ctx, stop, timestamp, run_name, purge_step=purge)
            try:
                finals = _run_stages(session, checkpoint)
            finally:
                session.close()
        return RunResult(finals, session.last_checkpoint, session.run_dir)
    finally:
        shutdown_distributed(ctx)


def _default_run_name(cfg: TrainConfig, timestamp: int) -> str:
    stem = Path(cfg.source).stem if cfg.source else "run"
    return f"{timestamp}_{stem}"


def _seed_global_rngs(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _run_stages(session: Session, checkpoint: dict[str, Any] | None) -> list[Path]:
    cfg = session.cfg
    stages = build_stages(cfg)
    first = _checkpoint_order(checkpoint) if checkpoint is not None else stages[0].order
    todo = [s for s in stages if s.order >= first]
    _check_network_sizes(todo)
    if any(s.section.loss_weights.get("perceptual") for s in todo):
        check_perceptual_weights_file(cfg)
    check_batch_split(todo, session.ctx.world_size)
    carried = _init_weights(cfg) if checkpoint is None else None
    step_offset, finals = 0, []
    for stage in todo:
        resume = checkpoint if stage.order == first else None
        state, objective, train_set, val_sets = prepare_stage(session, stage, resume, carried, step_offset)
        phase = f" (phase {stage.phase + 1}/{stage.num_phases})" if stage.phase is not None else ""
        crop = stage.section.cr_patch_size
        crop_text = f"{crop[0]}x{crop[1]} HR crops" if crop is not None else "whole images"
        session.logger.info(
            f"{stage.name} stage{phase}: x{stage.config.scale_factor}, {crop_text}, iterations {state.iteration}/"
            f"{state.total_iterations}, {len(train_set)} training items, batch {stage.config.batch_size}, "
            f"{session.ctx.world_size} process(es) on {session.device}"
        )
        train_stage(session, state, objective, train_set, val_sets)
        carried = state.evaluated_generator.state_dict()
        step_offset = state.step_offset + state.total_iterations
        if session.ctx.is_main:
            finals.append(model_path(session.options.output_dir, session.prefix(stage), "final"))
        if session.stopping and stage is not todo[-1]:  # a stop in a stage's last iteration: before the next
            session.stop_here(state, f"received {session.stop.name}")
    return finals  # a stop in the run's very last iteration: the run is complete anyway


def _check_network_sizes(stages) -> None:
    """Refuse absurdly large networks (built on the `meta` device) before any data or init_weights is read."""
    checked = set()
    for stage in stages:
        for kind in ("generator", "discriminator") if stage.adversarial else ("generator",):
            section = getattr(stage.config, kind)
            key = (kind, section.arch, repr(section.kwargs))
            if key not in checked:
                checked.add(key)
                check_network_size(kind, section, stage.config.source)


def check_batch_split(stages: Iterable[Stage], world_size: int) -> None:
    """Refuse, before any data is read, a global mini-batch that the processes cannot share evenly."""
    for stage in stages:
        size = stage.config.batch_size
        if size % world_size:
            raise ConfigError(
                f"{stage.config.source or 'config'}: batch_size {size}, the global mini-batch of the {stage.name} "
                f"stage, must divide evenly among the {world_size} processes; use a multiple of {world_size}"
            )


def _checkpoint_order(checkpoint: dict[str, Any]) -> tuple[int, int]:
    """The (stage, phase) a checkpoint was written in."""
    t = checkpoint["training"]
    return int(t["stage_index"]), int(t.get("phase") or 0)


def _init_weights(cfg: TrainConfig) -> dict[str, torch.Tensor] | None:
    """The generator weights of `init_weights`, in this library's key layout, or None."""
    if cfg.init_weights is None:
        return None
    return read_model_file(cfg.init_weights).state_dict


def prepare_stage(
    session: Session,
    stage: Stage,
    checkpoint: dict[str, Any] | None,
    init_weights: dict[str, torch.Tensor] | None,
    step_offset: int,
) -> tuple[TrainState, Objective, Any, dict[str, Any]]:
    """A stage's networks, optimisers, objective and data: fresh, from the previous stage, or resumed."""
    cfg, options, ctx, device = stage.config, session.options, session.ctx, session.device
    section = stage.section
    data_seed = derive_seed(cfg.seed, "data", *stage.seed_keys)
    train_set = build_train_set(cfg, section, data_seed, options.data_root, options.download)
    total = stage_iterations(section, len(train_set), cfg.batch_size)
    val_sets = build_val_sets(cfg, section, options.data_root, options.download) if ctx.is_main else {}

    generator = seeded(network_seed(cfg, "generator", stage), lambda: build_generator_from_config(cfg))
    if init_weights is not None and checkpoint is None:
        report = load_fitting_weights(generator, init_weights)
        origin = cfg.init_weights if step_offset == 0 else "the previous stage's generator"
        if step_offset and stage.phase:
            origin = "the previous phase's generator"
        if not report.loaded:
            raise CheckpointError(
                f"{origin}: none of its {len(init_weights)} tensors fits the {cfg.generator.arch} generator "
                f"({report.summary()}); check init_weights and the generator section"
            )
        session.logger.info(f"{stage.name} stage starts from {origin}: {report.summary()}")
    generator.to(device, memory_format=session.memory_format)
    discriminator = None
    if stage.adversarial:
        discriminator = seeded(network_seed(cfg, "discriminator", stage), lambda: build_discriminator_from_config(cfg))
        discriminator.to(device, memory_format=session.memory_format)
    objective = seeded(network_seed(cfg, "loss", stage), lambda: Objective(cfg, section, stage.adversarial, device))
    for module in objective.modules():
        module.to(memory_format=session.memory_format)
    ema = ModelEMA(generator, section.ema_decay) if section.ema_decay is not None else None
    nets = {"generator": generator, "discriminator": discriminator}
    optimizers, schedulers, scalers = build_optimizers(nets, section, total, session.scaler_enabled, device.type)
    sync_bn = cfg.distributed.sync_batch_norm
    state = TrainState(
        stage,
        wrap_model(generator, ctx, options.data_parallel, sync_bn),
        wrap_model(discriminator, ctx, options.data_parallel, sync_bn) if discriminator is not None else None,
        optimizers,
        schedulers,
        scalers,
        ema,
        total_iterations=total,
        data_seed=data_seed,
        dataset_size=len(train_set),
        batch_size=cfg.batch_size,
        step_offset=step_offset,
    )
    if checkpoint is not None:
        source = checkpoint.get(SOURCE_KEY, "checkpoint")
        check_iteration(int(checkpoint["training"]["iteration"]), total, stage.name, source)
        for note in state.load_training_dict(checkpoint, source):
            session.logger.info(f"{stage.name} stage: {note}")
        for name in state.use_config_learning_rates():
            session.logger.info(f"{stage.name}: the {name}'s learning rate is the config's, not the checkpoint's")
        set_rng_state(checkpoint["training"]["rng"])
    return state, objective, train_set, val_sets
