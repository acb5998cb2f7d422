"""Reading and writing image files as numpy arrays, keeping bit depth, greyscale, alpha, ICC and EXIF.

Arrays are `HW` (grey) or `HWC` (grey+alpha, RGB, RGBA), `uint8` or `uint16`, with the EXIF
orientation already applied; the rest of the EXIF block (camera, date, GPS) is carried to outputs
that store one, with the orientation dropped and the pixel size corrected. Pillow does the work,
except for 16-bit PNGs with colour or alpha, which it reduces to 8 bits on reading and refuses on
writing: `torch_sr.inference.png16` codes those.
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from torch_sr.files import OutputPathError, atomic_write
from torch_sr.errors import TorchSRError
from torch_sr.inference.defaults import CHROMA_SUBSAMPLING, DEFAULT_CHROMA, DEFAULT_QUALITY
from torch_sr.inference.png16 import decode_png16, encode_png16
from torch_sr.pixel_limit import bomb_message, check_pixels

# Output suffix -> Pillow format name.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
# Channel counts each format stores (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA); Pillow reads 32-bit
# BMPs without their alpha, so BMP counts as opaque.
_CHANNELS = {"PNG": {1, 2, 3, 4}, "TIFF": {1, 2, 3, 4}, "JPEG": {1, 3}, "WEBP": {3, 4}, "BMP": {1, 3}}
_KEEPS_ICC = {"PNG", "JPEG", "WEBP", "TIFF"}
_EXIF_BLOCK = {"JPEG", "PNG", "WEBP"}  # formats that store EXIF as a block of its own, read and written
_EXIF_IFD, _PIXEL_X, _PIXEL_Y = 0x8769, 0xA002, 0xA003
_ORIENTATION_TAG = 0x0112
_READ_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError, EOFError, struct.error, zlib.error)


class ImageFileError(TorchSRError):
    """An image file cannot be read or written; the message names it."""


@dataclass
class ImageFile:
    """Pixels of an image file and what to write back with them: the colour profile, the EXIF block
    (without its orientation: the pixels are upright), and whether the file was lossless WebP (whose
    upscale should not come back lossy)."""

    array: np.ndarray
    icc_profile: bytes | None = None
    lossless_webp: bool = False
    exif: bytes | None = None


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read any image Pillow knows (PNG, JPEG, WebP, BMP, TIFF, ...) as upright uint8/uint16 pixels.

    Images over the pixel limit (`torch_sr.pixel_limit`, checked from the header) and animated
    images (GIF, WebP, APNG: refused rather than silently reduced to their first frame) are errors.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageFileError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixel limit decides
            opened = Image.open(path)
        with opened as im:
            check_pixels(path, im.width, im.height, ImageFileError)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise ImageFileError(
                    f"{path}: an animated image ({frames} frames); upscale it as a video (e.g. convert it with "
                    "`ffmpeg -i in.gif out.mp4`) or save the frame you want as a still image"
                )
            icc = im.info.get("icc_profile") or None
            if im.format == "PNG" and is_png16_colour(path):
                array = decode_png16(path.read_bytes())
            else:
                array, icc = _pil_to_array(im, path, icc)
            # read after the pixels: Pillow (13 on) turns a TIFF upright while loading it and drops the tag
            exif = im.getexif()
            orientation = exif.pop(_ORIENTATION_TAG, 1)
            lossless = im.format == "WEBP" and _is_lossless_webp(path)
            # a TIFF's "EXIF" is its own structure (strips, sizes): only a separate EXIF block travels
            kept = exif.tobytes() if len(exif) and im.format in _EXIF_BLOCK else None
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageFileError(bomb_message(path)) from None
    except ImageFileError:
        raise
    except _READ_ERRORS as e:
        raise ImageFileError(f"{path}: not a readable image ({e})") from None
    return ImageFile(apply_orientation(array, orientation), icc, lossless, kept)


def _resized_exif(block: bytes, width: int, height: int) -> bytes:
    """The EXIF block with its recorded pixel size (where it has one) set to `width` x `height`."""
    exif = Image.Exif()
    exif.load(block)
    ifd = exif.get_ifd(_EXIF_IFD)
    for tag, value in ((_PIXEL_X, width), (_PIXEL_Y, height)):
        if tag in ifd:
            ifd[tag] = value
    return exif.tobytes()


def _is_lossless_webp(path: Path) -> bool:
    """Whether a WebP file's image is VP8L (lossless) rather than VP8, from its RIFF chunks."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)  # the image chunk follows the header and any VP8X/ICCP/ANIM chunks
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        if kind == b"ALPH":  # alpha beside a VP8 image: lossy colour
            return False
        at += 8 + size + (size & 1)
    return False


def _pil_to_array(im: Image.Image, path: Path, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        pass
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), icc
    elif mode == "I":
        values = np.asarray(im)
        if values.min() < 0 or values.max() > 65535:
            raise ImageFileError(f"{path}: 32-bit integer pixels outside the 16-bit range are not supported")
        return values.astype(np.uint16), icc
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = {"RGBa": "RGBA", "La": "LA"}.get(mode, "RGB")
        if mode in ("CMYK", "LAB", "HSV"):
            icc = None  # the profile describes the old colour space
        im = im.convert(target)
    else:
        raise ImageFileError(f"{path}: unsupported pixel format {mode!r}; convert it to 8- or 16-bit RGB first")
    if im.format == "TIFF" and max(_tiff_bits(im)) > 8:
        warnings.warn(
            f"{path}: 16-bit colour TIFF read as 8-bit (Pillow limitation); save it as 16-bit PNG to keep 16 bits"
        )
    return np.asarray(im).copy(), icc


def _tiff_bits(im: Image.Image) -> tuple[int, ...]:
    bits = getattr(im, "tag_v2", {}).get(258, (8,))
    return tuple(bits) if isinstance(bits, tuple) else (int(bits),)


def is_png16_colour(path: Path) -> bool:
    """16-bit PNG with colour or alpha, which Pillow would reduce to 8 bits (16-bit grey it keeps)."""
    with open(path, "rb") as f:
        header = f.read(26)
    return len(header) == 26 and header[12:16] == b"IHDR" and header[24] == 16 and header[25] in (2, 4, 6)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored with EXIF orientation 1-8 upright (as `PIL.ImageOps.exif_transpose`)."""
    flips = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    turn = flips.get(orientation)
    return np.ascontiguousarray(turn(array)) if turn else array


def image_format(path: str | os.PathLike) -> str:
    """Pillow format name for an output path, from its suffix."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        known = ", ".join(s.lstrip(".") for s in FORMATS)
        what = Path(path).suffix or "files without a suffix"
        raise ImageFileError(f"{path}: cannot write {what}; use one of {known}")
    return fmt


def write_image(
    path: str | os.PathLike,
    array: np.ndarray,
    icc_profile: bytes | None = None,
    quality: int = DEFAULT_QUALITY,
    chroma: str = DEFAULT_CHROMA,
    lossless: bool = False,
    exif: bytes | None = None,
) -> Path:
    """Write `array` atomically in the format named by the suffix, as close to it as the format allows.

    `quality` (1-100) applies to JPEG and WebP, `chroma` ("444" or "420" subsampling) to JPEG;
    `lossless` writes WebP losslessly (as the other formats but JPEG always are). `exif` (a block
    as `ImageFile.exif`) is written into JPEG, PNG and WebP files with its pixel size set to the
    array's (not into 16-bit PNGs, whose encoder is our own).
    16 bits are kept in PNG (any channels) and TIFF (grey); elsewhere they become 8 bits. Channels
    the format lacks are added (grey -> RGB for WebP) or, for alpha in JPEG, flattened onto white;
    each reduction is warned about. The ICC profile is kept where the format stores one.
    """
    path = Path(path)
    fmt = image_format(path)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or not 1 <= channels <= 4:
        raise ImageFileError(f"{path}: cannot write a {array.dtype} array of shape {array.shape}")
    if array.dtype == np.uint16 and fmt == "PNG":
        data = encode_png16(array, icc_profile)
        return _write(path, lambda f: f.write(data))
    if array.dtype == np.uint16 and not (fmt == "TIFF" and channels == 1):
        warnings.warn(f"{path}: {fmt} cannot hold these 16-bit pixels; writing 8 bits (use .png to keep 16)")
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if channels not in _CHANNELS[fmt]:
        array = _fit_channels(array, fmt, path)
        if (channels < 3) != (array.ndim == 2 or array.shape[2] < 3):
            icc_profile = None  # a grey profile does not describe RGB pixels
    im = Image.fromarray(array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    options: dict[str, object] = {}
    if icc_profile and fmt in _KEEPS_ICC:
        options["icc_profile"] = icc_profile
    if exif and fmt in _EXIF_BLOCK:
        options["exif"] = _resized_exif(exif, im.width, im.height)
    if fmt == "WEBP" and lossless:
        options["lossless"] = True
    elif fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if fmt == "JPEG":
        options["subsampling"] = CHROMA_SUBSAMPLING[chroma]
    return _write(path, lambda f: im.save(f, format=fmt, **options))


def _fit_channels(array: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    """The nearest channel layout `fmt` stores: grey -> RGB, or alpha flattened onto white."""
    allowed = _CHANNELS[fmt]
    hwc = array[:, :, None] if array.ndim == 2 else array
    c = hwc.shape[2]
    colour, alpha = (hwc[:, :, :-1], hwc[:, :, -1:]) if c in (2, 4) else (hwc, None)
    if alpha is not None and c not in allowed and c + 2 not in allowed:
        warnings.warn(f"{path}: {fmt} has no alpha channel; flattening the image onto white")
        a = alpha.astype(np.float32) / 255
        colour, alpha = np.rint(colour * a + 255 * (1 - a)).astype(np.uint8), None
    if colour.shape[2] == 1 and (1 if alpha is None else 2) not in allowed:
        colour = np.repeat(colour, 3, axis=2)
    out = colour if alpha is None else np.concatenate([colour, alpha], axis=2)
    return out[:, :, 0] if out.shape[2] == 1 else out


def _write(path: Path, write) -> Path:
    try:
        return atomic_write(path, write)
    except OutputPathError as e:
        raise ImageFileError(str(e)) from None
    except OSError as e:
        raise ImageFileError(f"{path}: cannot write ({e.strerror or e})") from None
