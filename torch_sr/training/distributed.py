"""Multi-device set-up: DistributedDataParallel under torchrun, DataParallel on one machine, or nothing.

torchrun describes each process in its environment (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`; never a
`--local_rank` argument). Process groups use NCCL on CUDA and gloo on the CPU. The mini-batch
`batch_size` is global: each of the W processes trains on B/W samples of it (see
`torch_sr.training.sampler`), so a config means the same thing on any number of devices. Only
rank 0 writes files and logs. Batch-norm statistics stay per process, as DDP's default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torch_sr.errors import TorchSRError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the run and the device it trains on."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the torchrun process group when `WORLD_SIZE` > 1; under CUDA each process takes `cuda:LOCAL_RANK`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device)
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    except KeyError as e:
        raise TorchSRError(
            f"WORLD_SIZE is {world_size} but {e.args[0]} is not set; start the run with torchrun"
        ) from None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TorchSRError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) here")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(device, rank, world_size, local_rank)


def shutdown_distributed(ctx: DistributedContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, ctx: DistributedContext, data_parallel: bool = True) -> nn.Module:
    """DDP under torchrun; DataParallel over every visible GPU when there are several (unless disabled)."""
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if data_parallel and ctx.device.type == "cuda" and torch.cuda.device_count() > 1:
        return nn.DataParallel(model)
    return model


def without_ddp(model: nn.Module) -> nn.Module:
    """The network inside DDP, for forward passes whose gradients DDP must not wait for.

    The generator step runs the discriminator with its parameters frozen; through the DDP wrapper
    that forward would make DDP expect gradients that never come.
    """
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Sum `tensor` over the processes in place (nothing to do in a single process)."""
    if ctx.distributed:
        dist.all_reduce(tensor)
    return tensor
