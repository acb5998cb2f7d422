"""The training loop: one mini-batch per pass, for the PSNR stage and the GAN stage alike.

Per iteration:
0. with a `degradation` other than clean bicubic, the batch's LR inputs are degraded on the device;
1. the generator upscales the LR batch; its loss terms are weighted and summed (stage 2 adds the
   adversarial term, judged by the discriminator with its parameters frozen) and back-propagated;
2. stage 2: the discriminator's loss on the HR batch and the detached outputs (three
   discriminator passes per iteration: the HR batch's logits serve both steps, since the
   discriminator does not change between them);
3. one synchronisation agrees on every loss value across processes, checks them for NaN/inf and
   honours stop requests, before any weight changes;
4. the optimisers step (gradient clipping and the AMP grad scaler included), the learning-rate
   schedules advance and the EMA follows the generator;
5. logs, validation, model snapshots and checkpoints at their intervals.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from torch_sr.data.realistic_degradations import build_degradation
from torch_sr.losses.total import total_loss
from torch_sr.training.data import NumberedSamples, build_train_loader, loader_workers
from torch_sr.training.distributed import without_ddp
from torch_sr.training.logging import progress_bar
from torch_sr.training.rng import derive_seed
from torch_sr.training.objective import Objective
from torch_sr.training.session import Session
from torch_sr.training.state import TrainState


def backward(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()


def optimizer_step(
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: list[nn.Parameter], clip: float | None
) -> None:
    """Step with the (possibly scaled) gradients, clipping their norm to `clip` first if set."""
    if clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(optimizer)
    scaler.update()


def train_stage(
    session: Session, state: TrainState, objective: Objective, train_set: NumberedSamples, val_sets: dict[str, Any]
) -> None:
    """Train `state` from its current iteration to the end of its stage."""
    cfg, device, ctx = session.cfg, session.device, session.ctx
    clip = state.stage.section.grad_clip_norm
    g, d = state.generator, state.discriminator
    d_frozen = without_ddp(d) if d is not None else None  # the discriminator as the generator step sees it
    adversarial = objective.adversarial
    opt, scaler = state.optimizers, state.scalers
    params = {name: [p for p in net.parameters() if p.requires_grad] for name, net in state.networks().items()}
    degrade = build_degradation(cfg.degradation, state.stage.config.scale_factor)
    workers = loader_workers(cfg.data.num_workers, device)
    loader = build_train_loader(
        train_set, state.batch_size, state.iteration, state.total_iterations, workers, ctx.rank, ctx.world_size,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    batches = iter(loader)
    show = session.options.progress and ctx.is_main
    bar = progress_bar(state.total_iterations, state.iteration, state.stage.name, show)
    sums: dict[str, float] = {}
    count, busy = 0, 0.0  # iterations and their seconds since the last log line
    for net in state.networks().values():
        net.train()

    with bar, session.stop.deferring():
        while state.iteration < state.total_iterations:
            start = time.perf_counter()
            batch = _next_batch(batches, session, state)
            lr = batch["lr"].to(device, non_blocking=True, memory_format=session.memory_format)
            hr = batch["hr"].to(device, non_blocking=True, memory_format=session.memory_format)
            if degrade is not None:  # realistic LR (and maybe a sharpened target), drawn from the iteration's seed
                seed = derive_seed(state.data_seed, "degradation", state.iteration, ctx.rank)
                lr, hr = degrade(hr, lr, torch.Generator().manual_seed(seed))
                lr = lr.contiguous(memory_format=session.memory_format)
                hr = hr.contiguous(memory_format=session.memory_format)

            # generator: loss terms and gradients (the discriminator judges without learning)
            with session.autocast():
                sr = g(lr)
                terms = objective.image_terms(sr, hr)
                if adversarial is not None:
                    hr_d, sr_d = random_window(hr, sr, objective.d_shift)
                    real_logits = d(hr_d)  # with the discriminator's graph, which its own step reuses
                    d_frozen.requires_grad_(False)
                    terms["adversarial"] = adversarial.g_loss(real_logits.detach(), d_frozen(sr_d))
                    d_frozen.requires_grad_(True)
                terms["g_total"] = total_loss(terms, objective.weights)
            backward(terms["g_total"], opt["generator"], scaler["generator"])

            # discriminator: the real HR images against the generator's detached outputs
            if adversarial is not None:
                with session.autocast():
                    terms["d_total"] = adversarial.d_loss(real_logits, d(sr_d.detach()))

            values = session.agree(terms, state)  # the one sync: NaN/inf check and stop requests
            optimizer_step(opt["generator"], scaler["generator"], params["generator"], clip)
            if adversarial is not None:
                backward(terms["d_total"], opt["discriminator"], scaler["discriminator"])
                optimizer_step(opt["discriminator"], scaler["discriminator"], params["discriminator"], clip)
            used_lrs = {name: o.param_groups[0]["lr"] for name, o in opt.items()}  # this iteration's, for the log
            for schedule in state.schedulers.values():
                schedule.step()
            if state.ema is not None:
                state.ema.update(g, state.iteration)
            state.iteration += 1
            session.iterations_run += 1
            count, busy = count + 1, busy + time.perf_counter() - start

            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
            bar.update()
            if state.iteration % cfg.logging.log_interval == 0 or state.iteration == state.total_iterations:
                session.log_training(state, {k: v / count for k, v in sums.items()}, used_lrs, busy, count)
                sums, count, busy = {}, 0, 0.0
            _at_intervals(session, state, objective, val_sets)


def random_window(hr: torch.Tensor, sr: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same window of both batches, `shift` pixels smaller, at a random offset (the global RNG's)."""
    if shift == 0:
        return hr, sr
    dy, dx = torch.randint(0, shift + 1, (2,)).tolist()
    h, w = hr.shape[-2] - shift, hr.shape[-1] - shift
    return hr[..., dy : dy + h, dx : dx + w], sr[..., dy : dy + h, dx : dx + w]


def _next_batch(batches: Iterator[dict[str, torch.Tensor]], session: Session, state: TrainState) -> dict:
    try:
        return next(batches)
    except RuntimeError:
        if session.stop.requested:  # a signal to the whole process group took the loader's workers with it
            session.stop_here(state, f"received {session.stop.name}")
        raise


def _at_intervals(session: Session, state: TrainState, objective: Objective, val_sets: dict[str, Any]) -> None:
    """What is due after the iteration just completed: validation, model files, checkpoint, a stop."""
    options, it = session.options, state.iteration
    last = it == state.total_iterations
    if it % state.stage.section.val_interval == 0 or last:
        session.validate(state, objective, val_sets)
    if options.store_model_interval and it % options.store_model_interval == 0:
        session.save_model(state, f"iter{it}")
    if last:
        session.save_model(state, "final", session.validation_meta(state))
    if it % options.checkpoint_interval == 0 or last:
        session.save_checkpoint(state)
    if session.stopping and not last:  # after the last, the run goes on to the next stage or ends (run.py)
        session.stop_here(state, f"received {session.stop.name}")
    if options.stop_after is not None and session.iterations_run >= options.stop_after:
        session.stop_here(state, f"--stop-after {options.stop_after}", exit_code=0)
