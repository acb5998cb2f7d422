"""Dataset images decoded once and kept in memory when they fit, so training never re-decodes PNGs."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from torch_sr.data.image_files import image_info, read_dataset_image
from torch_sr.errors import DatasetError

MEMORY_FRACTION = 0.25  # cache automatically when the decoded images take at most this much of the RAM


def physical_memory() -> int | None:
    """Bytes of RAM, where the OS says (POSIX); None elsewhere."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class ImageStore:
    """uint8 `HWC` images of `paths`, with sizes read from the headers up front.

    `cache=None` caches when the decoded images need at most `MEMORY_FRACTION` of the RAM. Caching
    decodes everything in the constructor, so DataLoader workers (forked) share one copy.
    """

    def __init__(self, paths: Sequence[str | Path], channels: int = 3, cache: bool | None = None):
        if channels not in (1, 3):
            raise DatasetError(f"img_channels must be 1 or 3, got {channels}")
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DatasetError("the dataset has no images")
        self.channels = channels
        info = [image_info(p) for p in self.paths]
        self.sizes = [(h, w) for h, w, _ in info]
        self.gray = [g for _, _, g in info]
        needed = sum(h * w * channels for h, w in self.sizes)
        if cache is None:
            ram = physical_memory()
            cache = ram is not None and needed <= MEMORY_FRACTION * ram
        self.cached: list[np.ndarray] | None = [self._decode(i) for i in range(len(self.paths))] if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, i: int) -> np.ndarray:
        img = read_dataset_image(self.paths[i], self.channels)
        if img.shape[:2] != self.sizes[i]:
            raise DatasetError(f"{self.paths[i]}: decoded size {img.shape[:2]} differs from its header {self.sizes[i]}")
        return img

    def __getitem__(self, i: int) -> np.ndarray:
        return self.cached[i] if self.cached is not None else self._decode(i)
