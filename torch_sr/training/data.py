"""A stage's training loader and validation sets, built from the config's dataset names."""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from torch_sr import pixel_limit
from torch_sr.config.schema import TrainConfig
from torch_sr.errors import ConfigError
from torch_sr.training.sampler import GlobalBatchSampler, epoch_permutation

class NumberedSamples(Dataset):
    """Item g of this dataset is global sample number g of `base` (see `torch_sr.training.sampler`).

    `base` is an `SRTrainDataset` (or anything with its `state_dict` / `load_state_dict` of
    `{"seed", "draws"}`): setting `draws = g` before reading an item seeds the item's RNG from
    (seed, g), so an item no longer depends on which worker made it or what it made before.
    """

    def __init__(self, base: Any, seed: int):
        self.base, self.seed, self.n = base, int(seed), len(base)
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, g: int) -> dict[str, torch.Tensor]:
        epoch, position = divmod(int(g), self.n)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, epoch_permutation(self.seed, epoch, self.n)
        self.base.load_state_dict({"seed": self.seed, "draws": int(g)})
        return self.base[int(self._order[position])]


def _images(specs: tuple[str, ...], split: str, data_root: Path | None, download: bool) -> list[Path]:
    from torch_sr.data.catalogue import resolve_images

    return [p for spec in specs for p in resolve_images(spec, split, data_root, download)]


def build_train_set(
    cfg: TrainConfig, stage: Any, seed: int, data_root: Path | None = None, download: bool = True
) -> NumberedSamples:
    """All of `stage.train_datasets` as one dataset of random crops.

    `cfg` is the run's config as the stage trains it (`Stage.config`: its scale and batch size) and
    `stage` its section.
    """
    from torch_sr.data.datasets import SRTrainDataset

    base = SRTrainDataset(
        _images(stage.train_datasets, "train", data_root, download),
        cfg.scale_factor,
        stage.cr_patch_size,
        spatial_transforms=True,
        hard_transforms=stage.hard_transforms,
        img_channels=cfg.img_channels,
        blur_sigma=stage.blur_sigma,
        cache=cfg.data.cache,
        seed=seed,
    )
    if stage.cr_patch_size is None and cfg.batch_size > 1:
        s = cfg.scale_factor
        shapes = {(h - h % s, w - w % s) for h, w in base.store.sizes}
        if len(shapes) > 1:  # (only square images are transposed, so one size stacks)
            raise ConfigError(
                f"{cfg.source}: cr_patch_size is null (whole images) but the training images differ in size, so "
                f"batches of {cfg.batch_size} cannot be stacked; set a crop size or batch_size 1"
            )
    return NumberedSamples(base, seed)


def stage_iterations(stage: Any, dataset_size: int, batch_size: int) -> int:
    """The stage's length in iterations: `num_iterations`, or `num_epoch` passes over the data."""
    if stage.num_iterations is not None:
        return int(stage.num_iterations)
    return math.ceil(stage.num_epoch * dataset_size / batch_size)


def loader_workers(setting: int | None, device: torch.device) -> int:
    """`data/num_workers`, or for null: 0 on the CPU (loading is ~2% of a step there), else min(4, CPU count)."""
    if setting is not None:
        return setting
    return 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)


def build_train_loader(
    dataset: NumberedSamples,
    batch_size: int,
    start_iteration: int,
    stop_iteration: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of this rank for iterations [start, stop); touches no global random state."""
    return DataLoader(
        dataset,
        batch_sampler=GlobalBatchSampler(batch_size, start_iteration, stop_iteration, rank, world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator(),  # the loader's own base seed, so the global torch RNG is not drawn
        worker_init_fn=functools.partial(pixel_limit.in_worker, pixel_limit.max_pixels()) if num_workers else None,
    )


def build_val_sets(
    cfg: TrainConfig, stage: Any, data_root: Path | None = None, download: bool = True
) -> dict[str, Any]:
    """`{display name: SREvalDataset}` of `stage.val_datasets` (their `val` split), decoded once."""
    from torch_sr.data.catalogue import dataset_name
    from torch_sr.data.datasets import SREvalDataset

    sets: dict[str, Any] = {}
    for spec in stage.val_datasets:
        name = dataset_name(spec)
        while name in sets:
            name += "_"
        paths = _images((spec,), "val", data_root, download)
        sets[name] = SREvalDataset(paths, cfg.scale_factor, img_channels=cfg.img_channels, cache=True)
    return sets
