"""Training and evaluation datasets: HR images in, (LR, HR) float [0, 1] tensor pairs out.

LR images are made as the benchmarks make them: MATLAB-bicubic downscaling (`imresize`) of the
uint8 HR image (modcropped for evaluation), quantised to uint8 like a saved LR file. With
`img_channels=1` the images are the BT.601 Y channel on [16, 235] (MATLAB `rgb2ycbcr`, rounded), the
plane that Y-only models are scored on and that inference feeds them, not a full-range grey. Training items
are random HR crops whose LR is computed on the fly, after the spatial transforms (flips and
transposes commute with MATLAB's symmetric kernel and mirrored borders, so LR and HR are transformed
identically) and before the hard ones (LR only).

Randomness: item k of a dataset seeded `s` is drawn from the seed (s, k), so a run is reproducible
and `state_dict()` is just two integers (the trainer sets them per global sample number:
`torch_sr.training.data.NumberedSamples`).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from torch_sr.data.augment import HardTransform, SpatialTransform
from torch_sr.data.degradation_specs import EvalDegradation
from torch_sr.data.degradations import gaussian_blur, modcrop
from torch_sr.data.image_files import image_info
from torch_sr.data.image_store import ImageStore
from torch_sr.data.imresize import imresize
from torch_sr.errors import ConfigError, DatasetError
from torch_sr.color import rgb_to_y


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 `HWC` -> float32 `(C, H, W)` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255)


def make_lr(hr: np.ndarray, scale: int, blur_sigma: float | None = None) -> np.ndarray:
    """uint8 LR of a uint8 HR image: optional Gaussian blur, then MATLAB bicubic 1/scale, as uint8."""
    if blur_sigma:
        hr = gaussian_blur(hr, blur_sigma)
    return imresize(hr, 1 / scale)


def to_y(img: np.ndarray) -> np.ndarray:
    """uint8 RGB `HWC` -> uint8 `HW1` BT.601 Y on [16, 235], rounded (MATLAB `rgb2ycbcr` on uint8)."""
    return np.rint(rgb_to_y(img)).astype(np.uint8)[:, :, None]


def _open_store(paths: Sequence[Path], img_channels: int, cache: bool | None) -> ImageStore:
    """Decoded RGB images; Y-only datasets reduce each item to Y (`_channels`) after cropping."""
    if img_channels not in (1, 3):
        raise DatasetError(f"img_channels must be 1 or 3, got {img_channels}")
    return ImageStore(paths, 3, cache)


def _channels(img: np.ndarray, img_channels: int) -> np.ndarray:
    return to_y(img) if img_channels == 1 else img


def _spatial_transforms(enabled: bool) -> dict[bool, SpatialTransform] | None:
    """By whether the image is square: only square images may be transposed (batches must stack)."""
    return {square: SpatialTransform(square) for square in (True, False)} if enabled else None


def _patch_size(patch_size: int | Sequence[int] | None, scale: int) -> tuple[int, int] | None:
    if patch_size is None:
        return None
    size = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(int(p) for p in patch_size)
    if len(size) != 2 or min(size) < scale or any(p % scale for p in size):
        raise ConfigError(
            f"patch size {list(size)} (cr_patch_size) must be two positive multiples of the scale {scale}"
        )
    return size


class _SeededItems:
    """Per-item seeds (seed, k) for the k-th item a dataset copy produces; see the module docstring."""

    def __init__(self, seed: int):
        self.seed, self.draws = int(seed), 0

    def next_rng(self) -> np.random.Generator:
        rng = np.random.default_rng([self.seed, self.draws])
        self.draws += 1
        return rng

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "draws": self.draws}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.draws = int(state["seed"]), int(state["draws"])


def _large_enough(paths: Sequence[Path], need: tuple[int, int]) -> list[Path]:
    """The images at least `need` (H, W) large; the others are skipped with a warning naming them."""
    if not paths:
        raise DatasetError("the dataset has no images")
    keep, small = [], []
    for path in paths:
        h, w, _ = image_info(Path(path))
        (keep if h >= need[0] and w >= need[1] else small).append(Path(path))
    if small:
        warnings.warn(
            f"skipping {len(small)} of {len(paths)} training images smaller than the HR patch {need[1]}x{need[0]} "
            f"(e.g. {small[0]})",
            stacklevel=3,
        )
    if not keep:
        raise DatasetError(f"no training image is at least {need[1]}x{need[0]} pixels; lower cr_patch_size")
    return keep


class SRTrainDataset(Dataset):
    """Random HR crops of `patch_size` (H, W) with their MATLAB-bicubic LR, augmented on the fly.

    `patch_size=None` gives whole (modcropped) images, transposed only when square, so images of
    one size stack into batches; images smaller than the patch are skipped with a warning. `repeat` makes one epoch visit every image that many times. Images are decoded
    once and cached when they fit in memory (`cache=None`).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        scale: int,
        patch_size: int | tuple[int, int] | None,
        *,
        spatial_transforms: bool = True,
        hard_transforms: bool = False,
        img_channels: int = 3,
        blur_sigma: float | None = None,
        cache: bool | None = None,
        seed: int = 0,
        repeat: int = 1,
    ):
        if scale < 1:
            raise ConfigError(f"scale must be at least 1, got {scale}")
        self.scale = scale
        self.patch_size = _patch_size(patch_size, scale)
        self.blur_sigma = blur_sigma
        self.repeat = max(1, int(repeat))
        self.img_channels = img_channels
        self.store = _open_store(_large_enough(paths, self.patch_size or (scale, scale)), img_channels, cache)
        self.spatial = _spatial_transforms(spatial_transforms)
        self.hard = HardTransform() if hard_transforms else None
        self.items = _SeededItems(seed)

    def __len__(self) -> int:
        return len(self.store) * self.repeat

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = self.items.next_rng()
        img = self.store[i % len(self.store)]
        if self.patch_size is None:
            hr = modcrop(img, self.scale)
        else:
            ph, pw = self.patch_size
            y = int(rng.integers(0, img.shape[0] - ph + 1))
            x = int(rng.integers(0, img.shape[1] - pw + 1))
            hr = img[y : y + ph, x : x + pw]
        hr = _channels(hr, self.img_channels)
        if self.spatial is not None:
            (hr,) = self.spatial[hr.shape[0] == hr.shape[1]](rng, hr)
        lr = make_lr(hr, self.scale, self.blur_sigma)
        if self.hard is not None:
            lr = self.hard(rng, lr)
        return {"lr": to_tensor(lr), "hr": to_tensor(hr)}

    def state_dict(self) -> dict[str, int]:
        return self.items.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.items.load_state_dict(state)


class SREvalDataset(Dataset):
    """Benchmark pairs: HR modcropped to the scale, LR = MATLAB imresize(HR, 1/scale) as uint8.

    With `degradation` (a parsed `test.py --degrade` spec) the LR is degraded as it says, the same way on
    every run (seeded by image name), so restoration of compressed or noisy inputs is scored repeatably.

    Items: `lr`, `hr` (float [0, 1], `img_channels` channels), `name` (file stem) and `gray` (the
    file is grayscale; the metrics then score it on its gray values, as the published tables do).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        scale: int,
        *,
        img_channels: int = 3,
        blur_sigma: float | None = None,
        cache: bool | None = None,
        degradation: EvalDegradation | None = None,
    ):
        if scale < 1:
            raise ConfigError(f"scale must be at least 1, got {scale}")
        if degradation is not None and blur_sigma:
            raise ConfigError("give blur_sigma or a degradation (which may blur), not both")
        self.scale = scale
        self.blur_sigma = blur_sigma
        self.degradation = degradation
        self.img_channels = img_channels
        self.store = _open_store(paths, img_channels, cache)
        for path, (h, w) in zip(self.store.paths, self.store.sizes):
            if h < scale or w < scale:
                raise DatasetError(f"{path}: {w}x{h} pixels is smaller than the scale {scale}")

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int) -> dict[str, Any]:
        hr = _channels(modcrop(self.store[i], self.scale), self.img_channels)
        name = self.store.paths[i].stem
        if self.degradation is not None:
            lr = self.degradation.apply(hr, self.scale, name)
        else:
            lr = make_lr(hr, self.scale, self.blur_sigma)
        return {"lr": to_tensor(lr), "hr": to_tensor(hr), "name": name, "gray": self.store.gray[i]}
