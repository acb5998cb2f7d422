"""The original project's training augmentations: albumentations transforms on a seeded schedule.

- Spatial (LR and HR alike): with p = 0.5 one of flip (weight 0.25: horizontal, vertical or both,
  uniformly) and transpose (weight 0.75) — albumentations' `OneOf([Flip(p=0.25), Transpose(p=0.75)],
  p=0.5)` of the original. Transposing is left out for non-square patches, whose batches could not
  be stacked otherwise.
- Hard (LR only): JPEG compression (p = 0.25) and coarse dropout (p = 0.25). REFERENCE.md gives only
  the probabilities; the strengths are ours: JPEG quality 50-95, 1-4 holes of 5-15% of each side.

Which transforms apply is drawn from the caller's `numpy.random.Generator` and albumentations does
the pixel work; only a transform that applies and has random parameters is seeded (from the same
generator). So an item is a pure function of its generator, and the schedule costs microseconds
where re-seeding a whole albumentations pipeline per item would cost about a millisecond.
"""
from __future__ import annotations

import numpy as np

JPEG_QUALITY = (50, 95)
DROPOUT_HOLES = (1, 4)
DROPOUT_SIZE = (0.05, 0.15)


class SpatialTransform:
    """Flip/transpose, applied identically to every image of one call."""

    def __init__(self, square: bool = True):
        import albumentations as A

        h, v = A.HorizontalFlip(p=1), A.VerticalFlip(p=1)
        self.flips = [[h], [v], [h, v]]
        self.transpose = [A.Transpose(p=1)] if square else None

    def __call__(self, rng: np.random.Generator, *images: np.ndarray) -> list[np.ndarray]:
        if rng.random() >= 0.5:
            return list(images)
        if self.transpose is not None and rng.random() < 0.75:
            chosen = self.transpose
        else:
            chosen = self.flips[int(rng.integers(3))]
        out = []
        for img in images:
            for t in chosen:
                img = t(image=img)["image"]
            out.append(img)
        return out


class HardTransform:
    """JPEG compression and coarse dropout (LR only), each with probability 0.25."""

    def __init__(self):
        import albumentations as A

        self.steps = [
            (A.ImageCompression(quality_range=JPEG_QUALITY, p=1), 0.25),
            (
                A.CoarseDropout(
                    num_holes_range=DROPOUT_HOLES, hole_height_range=DROPOUT_SIZE, hole_width_range=DROPOUT_SIZE, p=1
                ),
                0.25,
            ),
        ]

    def __call__(self, rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        for transform, p in self.steps:
            if rng.random() < p:
                transform.set_random_seed(int(rng.integers(2**31)))
                img = transform(image=img)["image"]
        return img
