"""Finding and decoding dataset images: upright uint8 arrays, and errors that name the broken file.

Images are turned upright by their EXIF orientation, as `torch_sr.inference.image_io` reads them
for inference, so a photo is the same image in training, evaluation and inference. Images larger
than the pixel limit (`torch_sr.pixel_limit`) are refused from their header, before decoding.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from torch_sr.errors import DatasetError, TorchSRError
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
            _check_mode(path, im.mode)
            h, w = im.height, im.width
            if _orientation(path, im) in (5, 6, 7, 8) and not _reported_upright(im):  # stored rotated by 90 degrees
                h, w = w, h
            return h, w, im.mode in _GRAY_MODES
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: not a readable image ({e}); replace or delete the file") from None


def _check_mode(path: Path, mode: str) -> None:
    if mode == "F":  # Pillow would clip [0, 1] floats to 0 and 1 of 255: a black image
        raise DatasetError(f"{path}: 32-bit float pixels are not supported; save it as an 8- or 16-bit image")


def _orientation(path: Path, im: "PIL.Image.Image") -> object:  # noqa: F821
    """The EXIF orientation as stored (a malformed one is not 5-8, so it turns nothing), without decoding:
    Pillow loads a whole PNG to look for an eXIf chunk it has not met before the pixels, so a PNG's
    chunk headers are scanned for one first."""
    if im.format == "PNG" and "exif" not in im.info and not _png_has_exif(path):
        return 1
    return im.getexif().get(_ORIENTATION_TAG, 1)


def _png_has_exif(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(8)
        while len(header := f.read(8)) == 8:
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                return False
            f.seek(length + 4, 1)  # the data and its CRC
    return False


def _reported_upright(im: "PIL.Image.Image") -> bool:  # noqa: F821
    """Pillow 13 on reports a TIFF's size already turned by its orientation (and turns it on loading)."""
    if im.format != "TIFF":
        return False
    stored = (im.tag_v2.get(256), im.tag_v2.get(257))  # ImageWidth, ImageLength as stored
    return stored != (im.width, im.height)


def read_dataset_image(path: Path, channels: int = 3) -> np.ndarray:
    """Decode to upright uint8 `HWC` with 3 (RGB; gray replicated, alpha dropped) or 1 (luma) channels.

    16-bit files are rounded to 8 bits (v / 257). A truncated or corrupt file raises `DatasetError` naming it.
    (Inference reads files with `torch_sr.inference.image_io.read_image`, which keeps 16 bits, alpha and ICC.)
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from torch_sr.inference.image_io import is_png16_colour

    if channels not in (1, 3):
        raise DatasetError(f"img_channels must be 1 or 3, got {channels}")
    try:
        with _open(path) as im:
            _check_mode(path, im.mode)
            wide = _png16_colour(path) if im.format == "PNG" and is_png16_colour(path) else None
            if wide is not None:  # Pillow would keep only the high bytes
                im = Image.fromarray(_to_8_bits(wide[:, :, :3]))
            else:
                im = ImageOps.exif_transpose(im)
                im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L"):
                im = Image.fromarray(_to_8_bits(np.asarray(im)))
            arr = np.array(im.convert("RGB" if channels == 3 else "L"))  # writable, for torch.from_numpy
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise DatasetError(f"{path}: cannot decode image ({e}); replace or delete the file") from None
    return arr if channels == 3 else arr[:, :, None]


def _to_8_bits(pixels: np.ndarray) -> np.ndarray:
    """16-bit pixels rounded to 8 bits (v / 257), as the 16-bit grey and colour files are both read."""
    return np.clip(np.rint(pixels / 257.0), 0, 255).astype(np.uint8)


def _png16_colour(path: Path) -> np.ndarray | None:
    """A 16-bit colour PNG's upright uint16 pixels, or None where its 16-bit reader declines (interlaced
    or animated files), which Pillow then reads at 8 bits."""
    from torch_sr.inference.image_io import read_image

    try:
        return read_image(path).array
    except TorchSRError:
        return None
