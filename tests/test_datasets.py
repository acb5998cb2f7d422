"""Training/evaluation datasets: LR made by MATLAB imresize, augmentations, caching, seeding, errors."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from torch_sr.data.datasets import SREvalDataset, SRTrainDataset
from torch_sr.data.degradations import gaussian_blur
from torch_sr.data.imresize import imresize
from torch_sr.errors import ConfigError, DatasetError


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def smooth_image(seed: int, h: int, w: int, channels: int = 3) -> np.ndarray:
    """Random but not white-noise content, so JPEG and resizing behave as on photos."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 4), max(2, w // 4), channels), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small[:, :, 0] if channels == 1 else small).resize((w, h), Image.BILINEAR))
    return img if channels == 3 else img[:, :]


@pytest.fixture
def folder(tmp_path):
    return [save(tmp_path / f"img{k}.png", smooth_image(k, 40 + 4 * k, 48)) for k in range(3)]


def u8(t: torch.Tensor) -> np.ndarray:
    return (t * 255).round().byte().permute(1, 2, 0).numpy()


def test_items_are_consistent_lr_hr_pairs(folder):
    ds = SRTrainDataset(folder, 4, (16, 24), spatial_transforms=True, seed=1)
    assert len(ds) == 3
    for i in range(12):
        item = ds[i]
        assert item["hr"].shape == (3, 16, 24) and item["lr"].shape == (3, 4, 6)
        assert item["hr"].dtype == torch.float32 and 0 <= item["hr"].min() and item["hr"].max() <= 1
        # LR is exactly MATLAB imresize of the (transformed) HR patch, quantised to uint8
        assert np.array_equal(u8(item["lr"]), imresize(u8(item["hr"]), 0.25))


def test_crops_come_from_the_image(folder):
    img = np.asarray(Image.open(folder[0]))
    ds = SRTrainDataset(folder[:1], 2, 8, spatial_transforms=False, seed=3)
    positions = set()
    for i in range(20):
        hr = u8(ds[i]["hr"])
        hits = [(y, x) for y in range(img.shape[0] - 7) for x in range(img.shape[1] - 7) if np.array_equal(img[y : y + 8, x : x + 8], hr)]
        assert hits
        positions.add(hits[0])
    assert len(positions) > 5  # random positions, not one fixed crop


def test_spatial_transform_frequencies(tmp_path):
    img = smooth_image(5, 16, 16)
    path = save(tmp_path / "sq.png", img)
    ds = SRTrainDataset([path], 4, None, spatial_transforms=True, seed=0, repeat=600)
    kinds = {"identity": 0, "transpose": 0, "h": 0, "v": 0, "hv": 0}
    variants = {
        "identity": img,
        "transpose": img.transpose(1, 0, 2),
        "h": img[:, ::-1],
        "v": img[::-1],
        "hv": img[::-1, ::-1],
    }
    for i in range(len(ds)):
        hr = u8(ds[i]["hr"])
        kind = next(k for k, v in variants.items() if np.array_equal(hr, v))
        kinds[kind] += 1
    n = len(ds)
    # p(apply) = 0.5; then transpose with weight 0.75, flip (h, v or both) with 0.25
    assert 0.42 < kinds["identity"] / n < 0.58
    assert 0.30 < kinds["transpose"] / n < 0.45
    assert all(kinds[k] > 5 for k in ("h", "v", "hv"))


def test_non_square_patches_never_transpose(folder):
    ds = SRTrainDataset(folder, 4, (8, 16), seed=0, repeat=20)
    assert all(ds[i]["hr"].shape == (3, 8, 16) for i in range(len(ds)))


def test_hard_transforms_touch_lr_only(tmp_path):
    img = smooth_image(6, 32, 32)
    path = save(tmp_path / "a.png", img)
    ds = SRTrainDataset([path], 2, None, spatial_transforms=False, hard_transforms=True, seed=0, repeat=200)
    clean_lr = imresize(img, 0.5)
    changed = 0
    for i in range(len(ds)):
        item = ds[i]
        assert np.array_equal(u8(item["hr"]), img)
        changed += not np.array_equal(u8(item["lr"]), clean_lr)
    # JPEG (p=0.25) or dropout (p=0.25): 1 - 0.75^2 = 0.44 of the items
    assert 0.3 < changed / len(ds) < 0.6


def test_blur_before_downscaling(tmp_path):
    img = smooth_image(7, 24, 24)
    path = save(tmp_path / "b.png", img)
    ds = SRTrainDataset([path], 2, None, spatial_transforms=False, blur_sigma=1.2)
    lr = u8(ds[0]["lr"])
    assert np.array_equal(lr, imresize(gaussian_blur(img, 1.2), 0.5))
    assert not np.array_equal(lr, imresize(img, 0.5))


def test_same_seed_same_items_and_resumable_state(folder):
    a = SRTrainDataset(folder, 2, 8, hard_transforms=True, seed=11)
    b = SRTrainDataset(folder, 2, 8, hard_transforms=True, seed=11)
    c = SRTrainDataset(folder, 2, 8, hard_transforms=True, seed=12)
    first = [a[i % 3]["lr"] for i in range(6)]
    assert all(torch.equal(x, b[i % 3]["lr"]) for i, x in enumerate(first))
    assert not all(torch.equal(x, c[i % 3]["lr"]) for i, x in enumerate(first))
    state = a.state_dict()
    nxt = a[0]["hr"]
    b.load_state_dict(state)
    assert torch.equal(b[0]["hr"], nxt)


def test_images_cached_in_memory(folder):
    ds = SRTrainDataset(folder, 2, 8, cache=True)
    for p in folder:
        p.unlink()  # cached images never go back to the files
    assert ds[2]["hr"].shape == (3, 8, 8)
    assert ds.store.cached is not None and len(ds.store.cached) == 3


def test_auto_cache_for_small_sets_and_off_on_request(folder):
    assert SRTrainDataset(folder, 2, 8).store.cached is not None
    ds = SRTrainDataset(folder, 2, 8, cache=False)
    assert ds.store.cached is None and ds[0]["lr"].shape == (3, 4, 4)


def test_corrupt_images_fail_with_their_path(tmp_path, folder):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="junk.png"):
        SRTrainDataset([*folder, junk], 2, 8)
    truncated = tmp_path / "trunc.jpg"
    Image.open(folder[0]).save(truncated, quality=95)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # header fine, pixels missing
    with pytest.raises(DatasetError, match="trunc.jpg"):
        SRTrainDataset([truncated], 2, 8, cache=True)  # decoded up front
    lazy = SRTrainDataset([truncated], 2, 8, cache=False)
    with pytest.raises(DatasetError, match="trunc.jpg"):
        lazy[0]  # decoded on use


def test_small_images_skipped_and_bad_patch_sizes(tmp_path, folder):
    tiny = save(tmp_path / "tiny.png", smooth_image(9, 6, 6))
    with pytest.warns(UserWarning, match="skipping 1 of 4"):
        ds = SRTrainDataset([*folder, tiny], 2, 8)
    assert len(ds) == 3
    with pytest.raises(DatasetError, match="no training image"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SRTrainDataset([tiny], 2, 8)
    with pytest.raises(ConfigError, match="multiples of the scale 4"):
        SRTrainDataset(folder, 4, (16, 18))
    with pytest.raises(DatasetError, match="no images"):
        SRTrainDataset([], 4, 16)


def test_grayscale_channels(tmp_path):
    path = save(tmp_path / "g.png", smooth_image(10, 16, 16, channels=1))
    ds = SRTrainDataset([path], 2, 8, img_channels=1)
    assert ds[0]["hr"].shape == (1, 8, 8) and ds[0]["lr"].shape == (1, 4, 4)
    rgb = SRTrainDataset([path], 2, 8)[0]["hr"]
    assert rgb.shape == (3, 8, 8) and torch.equal(rgb[0], rgb[1])


def test_eval_dataset_modcrops_and_flags_gray(tmp_path):
    rgb = smooth_image(11, 30, 43)
    gray = smooth_image(12, 20, 20, channels=1)
    paths = [save(tmp_path / "rgb.png", rgb), save(tmp_path / "gray.png", gray)]
    ds = SREvalDataset(paths, 4)
    item = ds[0]
    assert item["name"] == "rgb" and item["gray"] is False
    assert item["hr"].shape == (3, 28, 40) and np.array_equal(u8(item["hr"]), rgb[:28, :40])
    assert np.array_equal(u8(item["lr"]), imresize(rgb[:28, :40], 0.25))
    g = ds[1]
    assert g["gray"] is True and g["hr"].shape == (3, 20, 20)


def test_exif_rotated_photos_are_read_upright(tmp_path):
    from PIL import ImageOps

    stored = smooth_image(13, 16, 24)  # 24 wide, 16 high as stored; orientation 6 = rotate to 16x24
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert upright.shape == (24, 16, 3)
    item = SREvalDataset([path], 2)[0]
    assert item["hr"].shape == (3, 24, 16) and np.array_equal(u8(item["hr"]), upright)


def _with_orientation(img: Image.Image, path: Path, orientation: int) -> Path:
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)
    return path


def _chunks(data: bytes) -> list[bytes]:
    chunks, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append(data[pos : pos + 12 + length])
        pos += 12 + length
    return chunks


def test_rotated_tiffs_and_pngs_are_measured_and_read_upright(tmp_path):
    from torch_sr.data.image_files import image_info, read_dataset_image
    from torch_sr.inference.image_io import read_image

    stored = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    for path in (_with_orientation(stored, tmp_path / "o6.tif", 6), _with_orientation(stored, tmp_path / "o6.jpg", 6)):
        assert image_info(path)[:2] == (64, 48), path  # 48 wide when upright
        assert read_dataset_image(path).shape == (64, 48, 3)
        np.testing.assert_array_equal(read_dataset_image(path), read_image(path).array)
    # a PNG whose eXIf chunk follows the pixels (allowed by the PNG spec)
    png = _chunks(_with_orientation(stored, tmp_path / "o6.png", 6).read_bytes())
    exif = [c for c in png if c[4:8] == b"eXIf"]
    reordered = [c for c in png if c[4:8] != b"eXIf"]
    (tmp_path / "late.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(reordered[:-1] + exif + reordered[-1:]))
    assert exif and image_info(tmp_path / "late.png")[:2] == (64, 48)


def test_measuring_a_png_without_exif_decodes_no_pixels(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    from torch_sr.data.image_files import image_info

    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "a.png")

    def no_decoding(self):
        raise AssertionError("image_info decoded the pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert image_info(tmp_path / "a.png") == (30, 40, False)


def test_float_pixels_are_refused_and_16_bit_colour_is_rounded_like_16_bit_grey(tmp_path):
    from torch_sr.data.image_files import image_info, read_dataset_image
    from torch_sr.inference.image_io import write_image

    Image.fromarray(np.full((8, 8), 0.5, np.float32), mode="F").save(tmp_path / "float.tif")
    for read in (image_info, read_dataset_image):
        with pytest.raises(DatasetError, match=r"float\.tif: 32-bit float pixels are not supported"):
            read(tmp_path / "float.tif")
    values = np.random.default_rng(1).integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    write_image(tmp_path / "c16.png", values)
    write_image(tmp_path / "g16.png", values[:, :, 0])
    expected = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_dataset_image(tmp_path / "c16.png"), expected)
    np.testing.assert_array_equal(read_dataset_image(tmp_path / "g16.png", 1)[:, :, 0], expected[:, :, 0])


def _png16(path: Path, arr: np.ndarray, interlace: int) -> Path:
    """A 16-bit RGB PNG written by hand (Pillow cannot), Adam7-interlaced or not."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w, _ = arr.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    subs = [arr[y0::dy, x0::dx] for x0, y0, dx, dy in passes] if interlace else [arr]
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for sub in subs if sub.size for row in sub)
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, interlace)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_interlaced_16_bit_colour_pngs_and_odd_orientation_tags_still_read(tmp_path):
    import struct

    from torch_sr.data.image_files import image_info, read_dataset_image

    values = np.random.default_rng(2).integers(0, 65536, (16, 16, 3)).astype(np.uint16)
    rounded = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_dataset_image(_png16(tmp_path / "flat.png", values, 0)), rounded)
    interlaced = read_dataset_image(_png16(tmp_path / "adam7.png", values, 1))  # the 16-bit reader declines it
    assert interlaced.shape == (16, 16, 3) and np.abs(interlaced.astype(int) - rounded).max() <= 1
    # an Orientation entry of the wrong type (ASCII "ab"): not 5-8, so nothing turns, and the image reads
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHI", 0x0112, 2, 4) + b"ab\x00\x00" + struct.pack("<I", 0)
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(tmp_path / "ascii.jpg", exif=b"Exif\x00\x00" + tiff)
    assert image_info(tmp_path / "ascii.jpg")[:2] == (8, 12) and read_dataset_image(tmp_path / "ascii.jpg").shape == (8, 12, 3)
