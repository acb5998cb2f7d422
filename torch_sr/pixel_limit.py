"""The largest image, in pixels, that any command decodes: a documented bound on time and memory.

A small file can declare an enormous image (a PNG of one colour compresses ~1000:1), and upscaling
costs time and memory in proportion to the pixels. Every image reader checks the declared size from
the file header before decoding; the command-line tools raise the bound with `--max-pixels`.
Pillow's own decompression-bomb check, which speaks first for images over twice its limit, is raised
along with it.
"""
from __future__ import annotations

import os

from torch_sr.errors import TorchSRError

# 50 megapixels: an 8000x6000 photo passes; a 13000x13000 image (169 MP) is refused.
DEFAULT_MAX_PIXELS = 50_000_000
_limit = DEFAULT_MAX_PIXELS
PILLOW_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # Pillow's default Image.MAX_IMAGE_PIXELS


def max_pixels() -> int:
    """The current limit (input pixels per image)."""
    return _limit


def set_max_pixels(limit: int) -> None:
    """Set the limit for this process; Pillow's bomb check (which refuses above twice its own limit,
    before any reader of ours can look at the size) is raised along with it when needed."""
    global _limit
    if limit < 1:
        raise TorchSRError(f"--max-pixels {limit}: must be a positive number of pixels")
    from PIL import Image

    _limit = int(limit)
    Image.MAX_IMAGE_PIXELS = max(_limit, PILLOW_MAX_PIXELS)


def in_worker(limit: int, worker_id: int = 0) -> None:
    """A DataLoader `worker_init_fn` (bound with functools.partial to the parent's limit): workers
    started by spawn or forkserver (macOS, Windows, Python 3.14's Linux default) begin at the default."""
    set_max_pixels(limit)


def check_pixels(path: str | os.PathLike, width: int, height: int, error: type[TorchSRError] = TorchSRError) -> None:
    """Raise `error` naming `path` when a `width` x `height` image exceeds the limit."""
    if width * height > _limit:
        raise error(
            f"{path}: {width}x{height} is {width * height:,} pixels, more than the limit of {_limit:,}; if the image "
            f"is genuine, raise the limit with --max-pixels {width * height}"
        )


def bomb_message(path: str | os.PathLike) -> str:
    """What to say when Pillow refuses an image as a decompression bomb (more than twice its limit)."""
    return (
        f"{path}: declares far more than the limit of {_limit:,} pixels (a decompression bomb?); if the image "
        "is genuine, raise the limit with --max-pixels"
    )
