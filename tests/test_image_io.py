"""Image files: 8/16-bit round trips, channels, EXIF orientation, ICC profiles, unreadable files."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from torch_sr.errors import TorchSRError
from torch_sr.inference.image_io import ImageFileError, apply_orientation, read_image, write_image
from torch_sr.inference.png16 import decode_png16, encode_png16

RNG = np.random.default_rng(0)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def photo(h=24, w=20, channels=3, dtype=np.uint8) -> np.ndarray:
    """Smooth gradients plus a little noise: compresses like a photo, exercises every PNG filter."""
    peak = np.iinfo(dtype).max
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    planes = [(0.2 + 0.6 * (yy * (k + 1) % 1 + xx) / 2) for k in range(channels)]
    img = np.stack(planes, axis=2) + RNG.normal(0, 0.02, (h, w, channels))
    img = np.rint(np.clip(img, 0, 1) * peak).astype(dtype)
    return img[:, :, 0] if channels == 1 else img


def shape_of(channels, h=24, w=20):
    return (h, w) if channels == 1 else (h, w, channels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_8_bit_round_trips(tmp_path, channels, suffix):
    img = photo(channels=channels)
    write_image(tmp_path / f"x{suffix}", img)
    back = read_image(tmp_path / f"x{suffix}").array
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, img)


@pytest.mark.parametrize("channels", [1, 3])
def test_bmp_round_trip(tmp_path, channels):
    img = photo(channels=channels)
    write_image(tmp_path / "x.bmp", img)
    np.testing.assert_array_equal(read_image(tmp_path / "x.bmp").array, img)


@pytest.mark.parametrize("suffix,channels,expected", [
    (".jpg", 1, 1), (".jpg", 3, 3), (".jpeg", 3, 3), (".webp", 3, 3), (".webp", 4, 4), (".webp", 1, 3),
])
def test_lossy_formats(tmp_path, suffix, channels, expected):
    img = photo(64, 64, channels)
    write_image(tmp_path / f"x{suffix}", img)
    back = read_image(tmp_path / f"x{suffix}").array
    assert back.shape == shape_of(expected, 64, 64) and back.dtype == np.uint8  # grey JPEG stays grey
    reference = img if channels == expected else np.repeat(img[:, :, None], 3, axis=2)
    mse = np.mean((back.astype(float) - reference) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_sixteen_bit_png_round_trips(tmp_path, channels):
    img = photo(37, 23, channels, np.uint16)
    write_image(tmp_path / "x.png", img)
    back = read_image(tmp_path / "x.png").array
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, img)
    # An independent decoder agrees: Pillow keeps 16-bit grey, and reads colour as the high bytes.
    with Image.open(tmp_path / "x.png") as im:
        pil = np.asarray(im)
    if channels == 1:
        np.testing.assert_array_equal(pil, img)
    elif channels in (3, 4):
        np.testing.assert_array_equal(pil, (img >> 8).astype(np.uint8))


def _png_filter_types(data: bytes, height: int, row_bytes: int) -> set[int]:
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    return {raw[r * (row_bytes + 1)] for r in range(height)}


def test_png16_encoder_picks_filters_per_row():
    img = photo(64, 48, 3, np.uint16)
    img[::7] = RNG.integers(0, 65535, (len(img[::7]), 48, 3))  # noisy rows prefer other filters
    data = encode_png16(img)
    assert len(_png_filter_types(data, 64, 48 * 6)) >= 3
    np.testing.assert_array_equal(decode_png16(data), img)


def _reference_png16(img: np.ndarray, filters: list[int], interlace: int = 0) -> bytes:
    """PNG filtering written out pixel by pixel from the specification, one given filter per row."""
    h, w, c = img.shape
    raw = img.astype(">u2").reshape(h, w * c).view(np.uint8).astype(int)
    bpp, out = 2 * c, bytearray()
    for y in range(h):
        out.append(filters[y])
        for x in range(w * bpp):
            a = raw[y, x - bpp] if x >= bpp else 0
            b = raw[y - 1, x] if y else 0
            cc = raw[y - 1, x - bpp] if y and x >= bpp else 0
            p = a + b - cc
            if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - cc):
                paeth = a
            else:
                paeth = b if abs(p - b) <= abs(p - cc) else cc
            out.append((raw[y, x] - [0, a, b, (a + b) // 2, paeth][filters[y]]) % 256)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {2: 4, 3: 2, 4: 6}[c], 0, 0, interlace)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png16_decoder_undoes_every_filter(tmp_path, channels):
    img = RNG.integers(0, 65535, (10, 7, channels)).astype(np.uint16)
    data = _reference_png16(img, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(decode_png16(data), img)
    (tmp_path / "x.png").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png").array, img)
    with pytest.raises(ValueError, match="interlaced 16-bit PNGs are not supported"):
        decode_png16(_reference_png16(img, [0] * 10, interlace=1))


def test_sixteen_bit_grey_tiff_and_reduction_for_8_bit_formats(tmp_path):
    grey = photo(channels=1, dtype=np.uint16)
    write_image(tmp_path / "g.tif", grey)
    np.testing.assert_array_equal(read_image(tmp_path / "g.tif").array, grey)
    rgb = photo(dtype=np.uint16)
    with pytest.warns(UserWarning, match="writing 8 bits"):
        write_image(tmp_path / "c.bmp", rgb)
    back = read_image(tmp_path / "c.bmp").array
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.rint(rgb / 257).astype(np.uint8))


def _rgb16_tiff(path, img):
    """A minimal uncompressed 16-bit RGB TIFF (Pillow cannot write one)."""
    h, w, _ = img.shape
    data = img.astype("<u2").tobytes()
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 8), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 14),
            (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", t, kind, n) + (struct.pack("<HH", v, 0) if kind == 3 and n == 1 else struct.pack("<I", v))
        for t, kind, n, v in tags
    ) + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 14 + len(data)) + struct.pack("<HHH", 16, 16, 16) + data + ifd)


def test_sixteen_bit_colour_tiff_warns_that_pillow_reduces_it(tmp_path):
    img = photo(dtype=np.uint16)
    _rgb16_tiff(tmp_path / "c.tif", img)
    with pytest.warns(UserWarning, match="c.tif: 16-bit colour TIFF read as 8-bit"):
        back = read_image(tmp_path / "c.tif").array
    assert back.shape == img.shape


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    img = photo(12, 7)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(img).save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as im:
        upright = np.asarray(ImageOps.exif_transpose(im))
    back = read_image(tmp_path / "o.png").array
    np.testing.assert_array_equal(back, upright)
    assert back.shape[:2] == ((7, 12) if orientation >= 5 else (12, 7))
    # A TIFF the same (Pillow 13 turns TIFFs upright itself while loading: not a second time)
    Image.fromarray(img).save(tmp_path / "o.tif", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif").array, upright)
    # ...also for 16-bit pixels, which are not decoded by Pillow.
    np.testing.assert_array_equal(apply_orientation(img.astype(np.uint16), orientation), upright)


def test_exif_orientation_of_a_jpeg(tmp_path):
    img = photo(32, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display turns it 90 degrees clockwise
    Image.fromarray(img).save(tmp_path / "o.jpg", exif=exif, quality=95)
    back = read_image(tmp_path / "o.jpg").array
    assert back.shape == (16, 32, 3)
    with Image.open(tmp_path / "o.jpg") as im:
        np.testing.assert_array_equal(back, np.asarray(ImageOps.exif_transpose(im)))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_is_kept(tmp_path, suffix):
    write_image(tmp_path / f"x{suffix}", photo(), icc_profile=SRGB)
    assert read_image(tmp_path / f"x{suffix}").icc_profile == SRGB


def test_icc_profile_of_sixteen_bit_png_and_formats_without_profiles(tmp_path):
    write_image(tmp_path / "x.png", photo(dtype=np.uint16), icc_profile=SRGB)
    assert read_image(tmp_path / "x.png").icc_profile == SRGB
    write_image(tmp_path / "x.bmp", photo(), icc_profile=SRGB)
    assert read_image(tmp_path / "x.bmp").icc_profile is None


def test_pillow_modes_become_plain_arrays(tmp_path):
    Image.fromarray(photo(channels=1) > 128).save(tmp_path / "bits.png")  # mode "1"
    bits = read_image(tmp_path / "bits.png").array
    assert bits.dtype == np.uint8 and set(np.unique(bits)) <= {0, 255} and bits.ndim == 2
    palette = Image.fromarray(photo()).quantize(16)
    palette.save(tmp_path / "p.png", transparency=0)
    assert read_image(tmp_path / "p.png").array.shape == (24, 20, 4)
    palette.save(tmp_path / "p2.png")
    assert read_image(tmp_path / "p2.png").array.shape == (24, 20, 3)
    Image.fromarray(photo()).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").array.shape == (24, 20, 3)


def test_alpha_is_flattened_onto_white_where_the_format_has_none(tmp_path):
    img = np.zeros((8, 8, 4), np.uint8)
    img[..., 0] = 255
    img[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    with pytest.warns(UserWarning, match="flattening the image onto white"):
        write_image(tmp_path / "x.png.jpg", img)
    back = read_image(tmp_path / "x.png.jpg").array
    assert back.shape == (8, 8, 3)
    assert (back[6:, :, 1] > 240).all() and (back[:2, :, 1] < 20).all()


def test_unreadable_files_are_named(tmp_path):
    good = tmp_path / "good.png"
    write_image(good, photo())
    data = good.read_bytes()
    write_image(tmp_path / "good16.png", photo(channels=3, dtype=np.uint16))
    data16 = (tmp_path / "good16.png").read_bytes()
    cases = {
        "truncated.png": data[: len(data) // 2],
        "truncated16.png": data16[: len(data16) // 2],
        "bitflip16.png": data16[:60] + bytes([data16[60] ^ 0xFF]) + data16[61:],
        "garbage.jpg": b"this is not an image at all",
        "empty.webp": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ImageFileError, match=f"{name}: not a readable image"):
            read_image(tmp_path / name)
    with pytest.raises(ImageFileError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageFileError, match="is a folder"):
        read_image(tmp_path)
    assert issubclass(ImageFileError, TorchSRError)


def test_write_errors_are_named(tmp_path):
    with pytest.raises(ImageFileError, match=r"x\.gif: cannot write \.gif; use one of png"):
        write_image(tmp_path / "x.gif", photo())
    with pytest.raises(ImageFileError, match="cannot write a int32 array"):
        write_image(tmp_path / "x.png", photo().astype(np.int32))
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(ImageFileError, match=r"x\.png: lies under .*file, which is a file"):
        write_image(tmp_path / "file" / "x.png", photo())
