"""Counter-based data order: iteration i trains on the global sample numbers [i*B, (i+1)*B).

A sample number g is everything needed to make a training item: the epoch g // N picks a seeded
permutation of the N items, which maps g to an item, and the item's crop/flip/degradation RNG is
seeded from (seed, g) (`torch_sr.training.data.NumberedSamples`). So the data of any iteration is a
pure function of the seed and the iteration: resuming at iteration i just starts counting at
g = i*B, whatever the number of DataLoader workers or distributed ranks. Under DDP each of the W
ranks takes a contiguous B/W share of every global batch, so together they train on exactly the
samples one process would (the DistributedSampler-equivalent sharding).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from torch_sr.errors import ConfigError


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the `n` items."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class GlobalBatchSampler:
    """`DataLoader(batch_sampler=...)`: this rank's sample numbers for iterations [start, stop)."""

    def __init__(self, batch_size: int, start_iteration: int, stop_iteration: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ConfigError(
                f"batch_size {batch_size} is the global mini-batch and must divide evenly among the "
                f"{world_size} processes; use a multiple of {world_size}"
            )
        self.batch_size, self.start, self.stop = batch_size, start_iteration, stop_iteration
        self.per_rank = batch_size // world_size
        self.offset = rank * self.per_rank

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for iteration in range(self.start, self.stop):
            first = iteration * self.batch_size + self.offset
            yield list(range(first, first + self.per_rank))
