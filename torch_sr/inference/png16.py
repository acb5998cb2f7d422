"""A small numpy PNG codec for 16-bit images, which Pillow cannot keep at 16 bits in colour.

Only what 16-bit files need: bit depth 16, grey / grey+alpha / RGB / RGBA, no interlacing.
Encoding picks a filter per row like libpng; decoding undoes the filters along anti-diagonals,
since a pixel depends on its left, upper and upper-left neighbours only.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
CHANNELS = {t: c for c, t in COLOUR_TYPES.items()}


def encode_png16(array: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA) from a uint16 `HW`/`HWC` array.

    Each row gets the filter with the smallest sum of absolute differences (libpng's heuristic),
    computed with numpy for a few hundred rows at a time.
    """
    hwc = array[:, :, None] if array.ndim == 2 else array
    h, w, c = hwc.shape
    rows = hwc.astype(">u2").reshape(h, w * c).view(np.uint8)  # big-endian bytes, one image row per line
    compressor = zlib.compressobj(6)
    parts = []
    for r0 in range(0, h, 256):
        block = rows[r0 : r0 + 256].astype(np.int16)
        prev = rows[r0 - 1 : r0].astype(np.int16) if r0 else np.zeros((1, rows.shape[1]), np.int16)
        parts.append(compressor.compress(_filter_rows(block, prev, 2 * c).tobytes()))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", w, h, 16, COLOUR_TYPES[c], 0, 0, 0)
    chunks = [SIGNATURE, _chunk(b"IHDR", header)]
    if icc_profile:
        chunks.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    chunks += [_chunk(b"IDAT", b"".join(parts)), _chunk(b"IEND", b"")]
    return b"".join(chunks)


def _predictors(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> list[np.ndarray]:
    """The five PNG predictions (None, Sub, Up, Average, Paeth) from the three neighbours."""
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    return [np.zeros_like(left), left, up, (left + up) >> 1, paeth]


def _filter_rows(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Rows of bytes (int16) -> per row: filter type byte + filtered bytes, best filter per row."""
    up = np.concatenate([prev, raw[:-1]])
    left = np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    up_left = np.zeros_like(raw)
    up_left[:, bpp:] = up[:, :-bpp]
    candidates = (raw - np.stack(_predictors(left, up, up_left))) & 0xFF
    cost = np.where(candidates > 127, 256 - candidates, candidates).sum(axis=2)  # |signed byte|
    best = cost.argmin(axis=0)
    filtered = candidates[best, np.arange(raw.shape[0])]
    return np.concatenate([best[:, None], filtered], axis=1).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decode_png16(data: bytes) -> np.ndarray:
    """uint16 `HW`/`HWC` pixels of a non-interlaced 16-bit PNG; ValueError/zlib.error if malformed."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    pos, header, idat = len(SIGNATURE), None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError("PNG without an IHDR header")
    w, h, depth, colour_type, _, _, interlace = header
    if depth != 16 or colour_type not in CHANNELS:
        raise ValueError(f"expected a 16-bit grey/RGB(A) PNG, got depth {depth}, colour type {colour_type}")
    if interlace:
        raise ValueError("interlaced 16-bit PNGs are not supported; save the image without interlacing")
    c = CHANNELS[colour_type]
    bpp = 2 * c
    expected = h * (1 + w * bpp)
    inflater = zlib.decompressobj()  # inflates no more than the header declares: a bomb stops here
    raw = np.frombuffer(inflater.decompress(b"".join(idat), expected + 1), np.uint8)
    if raw.size != expected:
        found = f"more than {expected:,}" if raw.size > expected else f"{raw.size:,}"
        raise ValueError(f"PNG image data inflates to {found} bytes, but its header declares {expected:,}")
    raw = raw.reshape(h, 1 + w * bpp)
    types = raw[:, 0].astype(np.intp)
    if types.max(initial=0) > 4:
        raise ValueError(f"unknown PNG filter type {types.max()}")
    pixels = _unfilter(raw[:, 1:].reshape(h, w, bpp), types)
    out = pixels.reshape(h, w * bpp).view(">u2").reshape(h, w, c).astype(np.uint16)
    return out[:, :, 0] if c == 1 else out


def _unfilter(filtered: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Undo the row filters of `(H, W, bpp)` bytes, one anti-diagonal of pixels at a time."""
    h, w, bpp = filtered.shape
    recon = np.zeros(((h + 1) * (w + 1), bpp), np.int16)  # a zero row on top and column on the left
    flat = filtered.reshape(h * w, bpp).astype(np.int16)
    for k in range(h + w - 1):
        ys = np.arange(max(0, k - w + 1), min(k, h - 1) + 1)
        xs = k - ys
        idx = (ys + 1) * (w + 1) + xs + 1
        predictions = _predictors(recon[idx - 1], recon[idx - w - 1], recon[idx - w - 2])
        recon[idx] = (flat[ys * w + xs] + np.choose(types[ys][:, None], predictions)) & 0xFF
    return recon.reshape(h + 1, w + 1, bpp)[1:, 1:].astype(np.uint8)
