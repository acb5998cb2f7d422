"""Finding and decoding dataset images: upright uint8 arrays, and errors that name the broken file.

Images are turned upright by their EXIF orientation, as `torch_sr.inference.image_io` reads them
for inference, so a photo is the same image in training, evaluation and inference. Images larger
than the pixel limit (`torch_sr.pixel_limit`) are refused from their header, before decoding.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from torch_sr.errors import DatasetError
from torch_sr.pixel_limit import bomb_message, check_pixels

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_ORIENTATION_TAG = 0x0112
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (sub-folders are not searched)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _open(path: Path) -> "PIL.Image.Image":  # noqa: F821
    """`Image.open` within the pixel limit (checked from the header, before any decoding)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise DatasetError(bomb_message(path)) from None
    try:
        check_pixels(path, im.width, im.height, DatasetError)
    except DatasetError:
        im.close()
        raise
    return im


def image_info(path: Path) -> tuple[int, int, bool]:
    """(height, width, is_grayscale) of the upright image, from the file header only."""
    from PIL import UnidentifiedImageError

    try:
        with _open(path) as im:
            h, w = im.height, im.width
            if im.getexif().get(_ORIENTATION_TAG, 1) in (5, 6, 7, 8):  # stored rotated by 90 degrees
                h, w = w, h
            return h, w, im.mode in _GRAY_MODES
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable image ({e}); replace or delete the file") from None


def read_dataset_image(path: Path, channels: int = 3) -> np.ndarray:
    """Decode to upright uint8 `HWC` with 3 (RGB; gray replicated, alpha dropped) or 1 (luma) channels.

    16-bit files are scaled to 8 bits. A truncated or corrupt file raises `DatasetError` naming it.
    (Inference reads files with `torch_sr.inference.image_io.read_image`, which keeps 16 bits, alpha and ICC.)
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if channels not in (1, 3):
        raise DatasetError(f"img_channels must be 1 or 3, got {channels}")
    try:
        with _open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L"):
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8))
            arr = np.array(im.convert("RGB" if channels == 3 else "L"))  # writable, for torch.from_numpy
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e}); replace or delete the file") from None
    return arr if channels == 3 else arr[:, :, None]
