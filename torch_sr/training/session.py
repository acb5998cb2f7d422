"""A training run's surroundings: options, devices, logs, and the files it writes.

`Session` is what the training loop calls around each iteration: it agrees with the other
processes on the mini-batch's losses (one synchronisation per iteration, which also carries stop
requests and the NaN check), logs, validates and writes checkpoints and models. Only the main
process writes; every write is atomic.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from torch_sr.config.schema import TrainConfig
from torch_sr.config.validate import config_to_dict
from torch_sr.device import autocast_dtype
from torch_sr.errors import TorchSRError
from torch_sr.training import checkpointing
from torch_sr.training.distributed import DistributedContext, all_reduce_sum
from torch_sr.training.logging import RunLogger
from torch_sr.training.objective import Objective
from torch_sr.training.rng import rng_state
from torch_sr.training.signals import StopRequest
from torch_sr.training.stages import Stage, file_prefix
from torch_sr.training.state import TrainState
from torch_sr.training.validation import best_criterion, improves, validate

NONFINITE_SUFFIX = "_checkpoint.nonfinite.pth"  # a checkpoint whose weights gave a NaN/inf loss


@dataclass(frozen=True)
class TrainOptions:
    """The command line's settings (everything about a run that is not in its config)."""

    output_dir: Path = Path("saved_models")
    checkpoint_interval: int = 1000  # iterations
    best_checkpoint_warmup: int = 0  # iterations before a best model may be saved
    store_model_interval: int | None = None  # iterations between model snapshots
    device: torch.device = torch.device("cpu")
    autocast: bool = False
    amp_dtype: str | None = None  # "fp16" | "bf16"; None: fp16 on CUDA, bf16 on the CPU
    data_parallel: bool = True
    deterministic: bool = False  # CUDA: reproducible algorithms, no TF32 (`torch_sr.device.configure_cuda`)
    run_name: str | None = None
    data_root: Path | None = None
    download: bool = True
    stop_after: int | None = None  # iterations of this invocation, then checkpoint and stop
    progress: bool = True  # a tqdm bar (the command line shows it when stderr is a terminal)
    echo: bool = True  # log lines on stdout too


class NonFiniteLossError(TorchSRError):
    """A loss became NaN or infinite; training stopped before it changed any weight."""


class TrainingStopped(Exception):
    """Training stopped early with its state saved (a signal or `--stop-after`)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Session:
    """One invocation of a run: `timestamp` and `run_name` come from the checkpoint when resuming."""

    def __init__(
        self,
        cfg: TrainConfig,
        options: TrainOptions,
        ctx: DistributedContext,
        stop: StopRequest,
        timestamp: int,
        run_name: str,
        purge_step: int | None = None,
    ):
        self.cfg, self.options, self.ctx, self.stop = cfg, options, ctx, stop
        self.device = ctx.device
        self.timestamp, self.run_name = timestamp, run_name
        self.config_dict = config_to_dict(cfg)
        self.amp_dtype = autocast_dtype(self.device, options.amp_dtype) if options.autocast else None
        self.scaler_enabled = self.amp_dtype == torch.float16
        # channels_last: up to ~25% faster training iterations on the CPU (measured: README, "On the CPU")
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.preserve_format
        self.last_checkpoint: Path | None = None
        self.iterations_run = 0
        self.stopping = False  # every process agreed to stop after the current iteration
        self.last_validation: tuple[str, int, dict[str, float]] = ("", -1, {})  # stage, iteration, scores
        self._saved: tuple[str, int] | None = None
        self.run_dir = Path(cfg.logging.dir) / run_name if ctx.is_main else None
        self._purge_step = purge_step
        self._logger: RunLogger | None = None

    @property
    def logger(self) -> RunLogger:
        """Opened at the first message, so a run that fails while loading its data leaves no log behind."""
        if self._logger is None:
            self._logger = RunLogger(
                self.run_dir, self.cfg.logging, config=self.config_dict, run_id=self.run_name,
                purge_step=self._purge_step, echo=self.options.echo,
            )  # fmt: skip
        return self._logger

    # -- per iteration -----------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def agree(self, losses: dict[str, torch.Tensor], state: TrainState) -> dict[str, float]:
        """The mini-batch's losses averaged over the processes, as floats: the iteration's one sync.

        A non-finite loss on any process stops all of them here, before a weight changes, with an
        error naming it. A stop request on any process makes all of them finish this iteration and
        stop after it (`stopping`): its forward passes have already moved batch-norm statistics,
        spectral-norm vectors and the RNG, so only the completed iteration checkpoints exactly.
        """
        values = torch.stack([v.detach().float() for v in losses.values()])
        flag = torch.tensor([float(self.stop.requested)], device=values.device)
        synced = all_reduce_sum(torch.cat([values, flag]), self.ctx).tolist()
        world = self.ctx.world_size
        out = {name: v / world for name, v in zip(losses, synced)}
        for name, value in out.items():
            if not math.isfinite(value):
                where = f"{state.stage.name} stage, iteration {state.iteration + 1}"
                raise NonFiniteLossError(
                    f"{where}: the {name} loss is {value}; training stopped before this mini-batch changed any "
                    f"weight. {self._good_checkpoint(state)}"
                )
        if synced[-1] > 0:
            if not self.stop.requested:  # another process was signalled
                self.stop.signum = signal.SIGTERM
            self.stopping = True
        return out

    def _good_checkpoint(self, state: TrainState) -> str:
        """Which checkpoint to continue from after a non-finite loss, and how.

        A checkpoint written right before the failing iteration holds the weights that gave the
        non-finite loss: it is set aside as `<prefix>_checkpoint.nonfinite.pth` and the one before it
        (kept by `save_checkpoint`) takes its place, so that `--resume` continues from finite weights.
        """
        lrs = "g_lr/d_lr" if state.stage.adversarial else "lr"
        change = f"Lower the stage's {lrs}, set grad_clip_norm, or train without --autocast"
        resume = f"{change}, then continue with --resume CONFIG (a resumed run may change these keys)"
        path = self.last_checkpoint
        if not self.ctx.is_main:
            return resume
        if path is None:
            return f"No checkpoint was written in this invocation. {resume}"
        if self._saved != (state.stage.order, state.iteration):
            return f"The last good checkpoint is {path}. {resume}"
        bad = path.with_name(path.name.replace(checkpointing.CHECKPOINT_SUFFIX, NONFINITE_SUFFIX))
        os.replace(path, bad)
        previous = checkpointing.previous_checkpoint_path(path)
        already = f"The checkpoint of iteration {state.iteration} already gives it (set aside as {bad.name})"
        if not previous.is_file():
            self.last_checkpoint = None
            return f"{already} and the stage has no earlier checkpoint. {change}, then start the run again"
        os.replace(previous, path)
        return f"{already}; {path} is the previous checkpoint again. {resume}"

    def stop_here(self, state: TrainState, why: str, exit_code: int | None = None) -> None:
        """Save a checkpoint of the completed iterations and raise `TrainingStopped`."""
        path = self.save_checkpoint(state)
        where = f"{state.stage.name} stage at iteration {state.iteration}/{state.total_iterations}"
        saved = f"; checkpoint: {path}; continue with --resume or --load-checkpoint {path}" if path else ""
        message = f"{why}: stopped in the {where}{saved}"
        self.logger.info(message, echo=False)  # the command line prints it
        raise TrainingStopped(message, self.stop.exit_code if exit_code is None else exit_code)

    # -- logs and validation -----------------------------------------------------------------------

    def global_step(self, state: TrainState) -> int:
        return state.step_offset + state.iteration

    def log_training(self, state: TrainState, means: dict[str, float], lrs: dict[str, float], seconds: float, count: int) -> None:
        """The mean losses of the last `count` iterations and the learning rates the latest one used."""
        label = state.stage.name
        scalars = {f"{label}/train/{k}": v for k, v in means.items()}
        scalars.update({f"{label}/lr/{k}": v for k, v in lrs.items()})
        scalars[f"{label}/train/iterations_per_second"] = count / max(seconds, 1e-9)
        self.logger.scalars(scalars, self.global_step(state))
        losses = " ".join(f"{k} {v:.4g}" for k, v in means.items())
        lr_text = " ".join(f"lr_{k[0]} {v:.3g}" for k, v in lrs.items())
        self.logger.info(
            f"{label} {state.iteration}/{state.total_iterations} epoch {state.epoch}: {losses} | {lr_text} | "
            f"{count / max(seconds, 1e-9):.2f} it/s"
        )

    def validate(self, state: TrainState, objective: Objective, val_sets: dict[str, Any]) -> None:
        """Score the evaluated generator (EMA if any), log it, and save the best model after the warm-up."""
        if not self.ctx.is_main or not val_sets:
            return
        result = validate(
            state.evaluated_generator, val_sets, objective, self.device, self.cfg.logging.val_images,
            self.cfg.val_loss_tile,
        )  # fmt: skip
        label, step = state.stage.name, self.global_step(state)
        self.last_validation = (state.stage.label, state.iteration, result.metrics)
        self.logger.scalars({f"{label}/val/{k}": v for k, v in result.metrics.items()}, step)
        self.logger.images({f"{label}/samples/{k}": img for k, img in result.samples.items()}, step)
        self.logger.info(f"{label} validation at iteration {state.iteration}: {result.summary()}")
        criterion = best_criterion(state.stage.adversarial, objective)
        value = result.psnr if criterion == "psnr" else result.image_loss
        if state.iteration < self.options.best_checkpoint_warmup or value is None or math.isnan(value):
            return
        if improves(criterion, value, state.best["value"]):
            state.best = {"metric": criterion, "value": value, "iteration": state.iteration}
            path = self.save_model(state, "best", {"validation": result.metrics})
            self.logger.info(f"{label}: best validation {criterion} {value:.4f} so far: {path}")

    # -- files -------------------------------------------------------------------------------------

    def validation_meta(self, state: TrainState) -> dict[str, Any]:
        """`{"validation": scores}` when the model at this iteration was just validated (for its model file)."""
        stage, iteration, metrics = self.last_validation
        return {"validation": metrics} if (stage, iteration) == (state.stage.label, state.iteration) else {}

    def prefix(self, stage: Stage) -> str:
        return file_prefix(self.timestamp, stage)

    def meta(self, state: TrainState) -> dict[str, Any]:
        """What a model file records about its training (JSON-able)."""
        meta = {
            "stage": state.stage.label,
            "iteration": state.iteration,
            "epoch": state.epoch,
            "timestamp": self.timestamp,
            "run_name": self.run_name,
            "ema": state.ema is not None,
            "config": self.config_dict,
        }
        if state.stage.phase is not None:
            meta["phase"] = state.stage.phase + 1  # 1-based, as in the file name
        return meta

    def save_model(self, state: TrainState, kind: str, extra: dict[str, Any] | None = None) -> Path | None:
        """`<prefix>_<kind>_model.pth` (generator + EMA); main process only."""
        if not self.ctx.is_main:
            return None
        path = checkpointing.model_path(self.options.output_dir, self.prefix(state.stage), kind)
        ema = state.ema.module if state.ema is not None else None
        return checkpointing.save_model_file(path, state.generator, ema, {**self.meta(state), **(extra or {})})

    def save_checkpoint(self, state: TrainState) -> Path | None:
        """The full training state at the current iteration (once per iteration); main process only."""
        if not self.ctx.is_main:
            return None
        key = (state.stage.order, state.iteration)
        if self._saved == key and self.last_checkpoint is not None:
            return self.last_checkpoint
        training = {
            **state.training_dict(),
            "timestamp": self.timestamp,
            "run_name": self.run_name,
            "rng": rng_state(),
            "config": self.config_dict,
            "torch_version": str(torch.__version__),
        }
        path = checkpointing.checkpoint_path(self.options.output_dir, self.prefix(state.stage))
        ema = state.ema.module if state.ema is not None else None
        checkpointing.keep_previous(path)
        self.last_checkpoint = checkpointing.save_checkpoint(path, state.generator, ema, self.meta(state), training)
        self._saved = key
        return self.last_checkpoint

    def close(self) -> None:
        if self._logger is not None:
            self._logger.close()
