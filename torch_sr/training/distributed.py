"""Multi-device set-up: DistributedDataParallel under torchrun, DataParallel on one machine, or nothing.

torchrun describes each process in its environment (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`; never a
`--local_rank` argument). Process groups use NCCL on CUDA and gloo on the CPU, with the config's
`distributed/timeout_minutes` (only rank 0 validates while the others wait in the next
all-reduce, so the timeout must outlast a validation). The mini-batch `batch_size` is global:
each of the W processes trains on B/W samples of it (see `torch_sr.training.sampler`), so the
data and the gradients of an iteration are those of one process; batch-norm statistics are the
exception, computed per process over B/W samples unless `distributed/sync_batch_norm` makes
them span the global batch. Only rank 0 writes files and logs.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torch_sr.device import make_current
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


def init_distributed(device: torch.device, timeout_minutes: float = 60.0) -> DistributedContext:
    """Join the torchrun process group when `WORLD_SIZE` > 1; under CUDA each process takes `cuda:LOCAL_RANK`.

    An indexed CUDA device becomes the current one in every case (`make_current`).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        make_current(device)
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
        make_current(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return DistributedContext(device, rank, world_size, local_rank)


def shutdown_distributed(ctx: DistributedContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(
    model: nn.Module, ctx: DistributedContext, data_parallel: bool = True, sync_batch_norm: bool = False
) -> nn.Module:
    """DDP under torchrun; DataParallel over every visible GPU when there are several (unless disabled).

    DataParallel gathers on the run's device and puts it first (it holds the parameters), so
    `--device cuda:1` works beside the other GPUs. `sync_batch_norm` turns the batch norms of a
    DDP-trained network into `SyncBatchNorm` (CUDA only; the parameters stay the same objects, so
    optimisers built before keep working).
    """
    if ctx.distributed:
        if sync_batch_norm and ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif sync_batch_norm and _has_batch_norm(model):
            warnings.warn("distributed/sync_batch_norm needs CUDA: batch norm stays per process", stacklevel=2)
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if data_parallel and ctx.device.type == "cuda" and torch.cuda.device_count() > 1:
        first = ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()
        ids = [first, *(i for i in range(torch.cuda.device_count()) if i != first)]
        return AutocastDataParallel(model, device_ids=ids, output_device=first)
    return model


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class AutocastDataParallel(nn.DataParallel):
    """DataParallel whose replicas compute in the caller's autocast dtype.

    Autocast's dtype is thread-local, and DataParallel runs each replica in a new thread that
    re-enables autocast without a dtype: under `--amp-dtype bf16` the replicas would compute in
    float16, the thread default, and without the gradient scaler that float16 needs. Each replica
    is therefore run inside an autocast of the dtype the caller's thread has. (Refusing bf16 with
    DataParallel was the alternative; carrying the dtype keeps the default multi-GPU set-up working
    for bf16 at the cost of this one override. torchrun/DDP, one process per GPU, has no threads.)
    """

    def parallel_apply(self, replicas: Sequence[nn.Module], inputs: Sequence[Any], kwargs: Any) -> list[Any]:
        return super().parallel_apply(carry_autocast(replicas, self.src_device_obj.type), inputs, kwargs)


def carry_autocast(replicas: Sequence[nn.Module], device_type: str) -> list[nn.Module]:
    """`replicas`, each wrapped to re-enter this thread's autocast (enabled and dtype) wherever it runs."""
    if not torch.is_autocast_enabled(device_type):
        return list(replicas)
    dtype = torch.get_autocast_dtype(device_type)
    return [_InAutocast(replica, device_type, dtype) for replica in replicas]


class _InAutocast(nn.Module):
    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.module(*args, **kwargs)


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
