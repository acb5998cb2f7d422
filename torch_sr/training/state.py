"""Everything that changes while a stage trains, and its checkpoint form.

Building a stage's state is deterministic: each network is initialised from a seed derived from
the config's seed and its role, with the global RNG forked, so a run that resumes builds exactly
what a straight run built. Learning rates follow the config's `LRSchedule` through `LambdaLR`
(stepped once per iteration); Adam trains only the parameters that require gradients (the frozen
encoder of `unet_resnet18` stays frozen).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from torch_sr.state_dicts import check_state_dict_fits
from torch_sr.config.schema import TrainConfig
from torch_sr.errors import CheckpointError
from torch_sr.archs.description import unwrap
from torch_sr.training.ema import ModelEMA
from torch_sr.training.rng import derive_seed
from torch_sr.training.stages import Stage


def seeded(seed: int, build: Callable[[], Any]) -> Any:
    """`build()` with the global torch RNG seeded from `seed`, leaving the global state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@dataclass
class TrainState:
    """A stage in progress: networks (possibly DDP/DataParallel-wrapped), optimisers, progress."""

    stage: Stage
    generator: nn.Module
    discriminator: nn.Module | None
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, LambdaLR]
    scalers: dict[str, torch.amp.GradScaler]
    ema: ModelEMA | None
    total_iterations: int
    data_seed: int
    dataset_size: int
    batch_size: int
    step_offset: int = 0  # global log step of this stage's iteration 0
    iteration: int = 0  # iterations completed in this stage
    best: dict[str, Any] = field(default_factory=lambda: {"metric": None, "value": None, "iteration": None})

    @property
    def epoch(self) -> int:
        """Completed passes over the training data."""
        return self.iteration * self.batch_size // self.dataset_size

    @property
    def evaluated_generator(self) -> nn.Module:
        """What validation scores and `load_model` loads: the EMA when there is one."""
        return self.ema.module if self.ema is not None else unwrap(self.generator)

    def networks(self) -> dict[str, nn.Module]:
        nets = {"generator": self.generator}
        if self.discriminator is not None:
            nets["discriminator"] = self.discriminator
        return nets

    def training_dict(self) -> dict[str, Any]:
        """The stage's part of a checkpoint's `training` entry (the generator is stored as a model file)."""
        d = self.discriminator
        return {
            "stage": self.stage.label,
            "stage_index": self.stage.index,
            "phase": self.stage.phase,
            "iteration": self.iteration,
            "total_iterations": self.total_iterations,
            "epoch": self.epoch,
            "step_offset": self.step_offset,
            "discriminator": None if d is None else {k: v.detach().cpu() for k, v in unwrap(d).state_dict().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "ema_decay": None if self.ema is None else self.ema.decay,
            "data": {
                "seed": self.data_seed,
                "next_sample": self.iteration * self.batch_size,
                "batch_size": self.batch_size,
                "dataset_size": self.dataset_size,
            },
            "best": dict(self.best),
        }

    def load_training_dict(self, checkpoint: dict[str, Any], source: str = "checkpoint") -> list[str]:
        """Continue from a checkpoint of this stage (networks, optimisers, schedulers, scalers, progress).

        A checkpoint that does not fit is a `CheckpointError` naming `source`. Returns notes for the
        log: a gradient scaler that cannot take the checkpoint's state (see `load_scaler_state`) starts
        afresh.
        """
        t = checkpoint["training"]
        nets = {"generator": (self.generator, checkpoint.get("state_dict"))}
        if self.discriminator is not None:
            nets["discriminator"] = (self.discriminator, t.get("discriminator"))
        for name, (net, sd) in nets.items():
            if not isinstance(sd, dict):
                raise CheckpointError(f"{source}: damaged training checkpoint: no {name} weights")
            check_state_dict_fits(unwrap(net), sd, f"{source} ({name})")
            unwrap(net).load_state_dict(sd)
        if self.ema is not None:
            ema = checkpoint.get("state_dict_ema") or checkpoint["state_dict"]
            check_state_dict_fits(self.ema.module, ema, f"{source} (EMA generator)")
            self.ema.load_state_dict(ema)
        try:
            for kind in ("optimizers", "schedulers"):
                for name, obj in getattr(self, kind).items():
                    obj.load_state_dict(t[kind][name])
            kind = "scalers"
            notes = [note for name, sc in self.scalers.items() if (note := load_scaler_state(sc, t[kind][name], name))]
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise CheckpointError(
                f"{source}: damaged training checkpoint: its {kind} do not fit this stage's ({type(e).__name__}: {e})"
            ) from None
        for name, opt in self.optimizers.items():  # Adam's moments must have their parameters' shapes
            for param, entries in opt.state.items():
                if any(isinstance(v, torch.Tensor) and v.ndim and v.shape != param.shape for v in entries.values()):
                    raise CheckpointError(
                        f"{source}: damaged training checkpoint: the {name} optimiser's state does not fit its network"
                    )
        self.iteration = int(t["iteration"])
        self.step_offset = int(t["step_offset"])
        self.best = dict(t["best"])
        return notes

    def use_config_learning_rates(self) -> list[str]:
        """After `load_training_dict`: take the config's learning rates where they differ from the checkpoint's
        (a resumed run may lower them), and set every rate to its schedule's factor now, for the config's
        length of the stage (which a resumed run may change: the optimiser's saved rate is the old curve's).
        Returns the optimisers whose base rate changed."""
        changed = []
        for name, opt in self.optimizers.items():
            lr, schedule = self.stage.section.optimizers[name].lr, self.schedulers[name]
            if any(base != lr for base in schedule.base_lrs):
                schedule.base_lrs = [lr] * len(opt.param_groups)
                for group in opt.param_groups:
                    group["initial_lr"] = lr
                changed.append(name)
            for group, base, factor in zip(opt.param_groups, schedule.base_lrs, schedule.lr_lambdas):
                group["lr"] = base * factor(schedule.last_epoch)  # as LambdaLR computes it: bit-identical when unchanged
            schedule._last_lr = [group["lr"] for group in opt.param_groups]
        return changed


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict[str, Any], name: str) -> str | None:
    """Load a checkpoint's gradient-scaler state, or say why this scaler starts afresh.

    A run may resume with or without `--autocast` fp16 whatever the checkpoint was trained with. A
    disabled scaler saves an empty state, which an enabled one refuses: the fp16 run then starts
    from a fresh scale (it settles within a few iterations). A disabled scaler ignores any state.
    """
    if scaler.is_enabled() and not state:
        return f"the {name}'s fp16 gradient scaler starts afresh (the checkpoint was trained without fp16 autocast)"
    if not scaler.is_enabled() and state:
        return f"the checkpoint's fp16 gradient scale of the {name} is dropped (this run has no fp16 autocast)"
    scaler.load_state_dict(state)
    return None


def build_optimizers(
    networks: dict[str, nn.Module | None], section: Any, total_iterations: int, scaler_enabled: bool, device_type: str
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, LambdaLR], dict[str, torch.amp.GradScaler]]:
    """Adam, its `LambdaLR` schedule and a GradScaler per network, from the section's `optimizers`."""
    optimizers, schedulers, scalers = {}, {}, {}
    for name, settings in section.optimizers.items():
        params = [p for p in networks[name].parameters() if p.requires_grad]
        optimizers[name] = torch.optim.Adam(params, lr=settings.lr, betas=settings.betas)
        schedule = settings.schedule
        schedulers[name] = LambdaLR(optimizers[name], lambda i, s=schedule: s.factor(i, total_iterations))
        scalers[name] = torch.amp.GradScaler(device_type, enabled=scaler_enabled)
    return optimizers, schedulers, scalers


def network_seed(cfg: TrainConfig, role: str, stage: Stage) -> int:
    """The seed a network of `role` ('generator', 'discriminator', 'loss') is initialised from in `stage`."""
    return derive_seed(cfg.seed, role, *stage.seed_keys)
