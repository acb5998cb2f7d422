"""The tile blender: tile layout, partition-of-unity weights, seamless results, memory-driven tile size."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from reference_archs import randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.errors import TorchSRError
from torch_sr.inference import tiling
from torch_sr.inference.upscaler import DEFAULT_TILE_OVERLAP, Upscaler


@torch.no_grad()
def photo_model(x: torch.Tensor, scale: int = 2, seed: int = 0, **hparams) -> RRDBNet:
    """A tiny random RRDBNet whose output on `x` looks like an image (mean 0.5, std 0.2, not clamped).

    Its random weights make every output pixel depend strongly on a wide neighbourhood, a harder
    case for tiling than a trained model.
    """
    model = randomize_(RRDBNet(scale_factor=scale, rrdb_channels=8, growth_channels=4, num_basic_blocks=2, **hparams),
                       seed=seed, std=0.1).eval()
    y = model(x[..., :64, :64])
    k = 0.2 / y.std()
    model.conv_last.weight.mul_(k)
    model.conv_last.bias.mul_(k).add_(0.5 - k * y.mean())
    return model


def synthetic_photo(h: int = 192, w: int = 192, seed: int = 0) -> torch.Tensor:
    """Smooth shading, hard edges and fine texture, like a photo: (1, 3, h, w) in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.3 + 0.4 * xx, 0.5 + 0.3 * torch.sin(6 * yy), 0.6 - 0.3 * xx * yy])
    disc = (((xx - 0.4) ** 2 + (yy - 0.6) ** 2) < 0.06).float()
    texture = F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=gen), size=(h, w), mode="bilinear")[0]
    return (base * (1 - 0.5 * disc) + 0.15 * texture).clamp(0, 1)[None]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def seam_score(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest change, over all rows and columns, of the mean step between neighbouring pixels.

    A seam is a line along which the tiled image jumps where the reference does not: it shows
    as a spike in this profile.
    """
    score = 0.0
    for dim in (-1, -2):
        steps = [(t.diff(dim=dim)).abs().mean(dim=(0, 1, -2 if dim == -1 else -1)) for t in (out, ref)]
        score = max(score, float((steps[0] - steps[1]).abs().max()))
    return score


@pytest.mark.parametrize(
    "length,tile,overlap,align",
    [(L, T, ov, al) for L, T, ov, al in itertools.product([1, 63, 65, 150, 513], [16, 48, 128], [0, 4, 12], [1, 2, 4])
     if ov <= T // 4],
)
def test_tiles_cover_overlap_align_and_weights_sum_to_one(length, tile, overlap, align):
    spans = tiling.tile_spans(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert b0 % align == 0 and a0 < b0 <= a1 < b1
        assert a1 - b0 >= overlap  # neighbours share at least the requested overlap
    assert all(b - a <= tile + 2 * align for a, b in spans)
    for scale in (1, 3):
        total = torch.zeros(length * scale)
        for k, (a, b) in enumerate(spans):
            w = tiling.ramp_weights(spans, k, scale)
            assert w.shape == ((b - a) * scale,) and (w >= 0).all() and (w <= 1).all()
            total[a * scale : b * scale] += w
        torch.testing.assert_close(total, torch.ones_like(total))


def test_small_aligned_tiles_never_reach_past_their_neighbours():
    """Cuts rounded to `align` once fell closer than the overlap: three tiles covered some pixels and
    their weights summed to less than one (a dark stripe). Every small tile, overlap and length."""
    for align, tile in itertools.product([1, 2, 4], range(4, 41)):
        for overlap, length in itertools.product(sorted({0, 2, tile // 4}), range(tile + 1, 3 * tile + 5)):
            spans = tiling.tile_spans(length, tile, overlap, align)
            assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[2:])), (align, tile, overlap, length, spans)
            assert max(b - a for a, b in spans) <= max(tile + 2 * align, 24)


def test_a_model_that_needs_multiples_of_four_tiles_into_the_same_image():
    model = RRDBNet(scale_factor=1, num_basic_blocks=1, rrdb_channels=8, growth_channels=4, pixel_unshuffle=4).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.conv_last.bias.fill_(0.5)  # 0.5 everywhere: any weight that does not sum to one shows
    out = Upscaler(model, device="cpu", tile=16).upscale_tensor(torch.rand(1, 3, 25, 40))
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_the_overlap_is_capped_at_a_quarter_of_the_tile():
    """So every tile keeps at least half its pixels: a larger overlap would only cost more tiles."""
    for spans in tiling.tile_grid(300, 200, 64, overlap=48):
        shared = [a1 - b0 for (_, a1), (b0, _) in zip(spans, spans[1:])]
        assert shared and set(shared) == {64 // 4}


def test_ramps_are_feathered_and_ignore_tile_edges():
    spans = tiling.tile_spans(200, 100, 40, 1)
    w = tiling.ramp_weights(spans, 0, 1)
    a0, a1 = spans[1][0], spans[0][1]  # the shared 40 pixels
    overlap_w = w[a0:a1]
    assert (overlap_w[-10:] == 0).all()  # the outer quarter (next to the tile's edge) has no say
    assert (overlap_w[:10] == 1).all()
    middle = overlap_w[10:30]
    assert (middle.diff() < 0).all() and 0 < middle.min() and middle.max() < 1  # a smooth ramp, not a cut


@pytest.mark.parametrize("tile,overlap,batch", [(None, 0, 1), (16, 4, 1), (16, 4, 3), (10, 0, 2), (24, 6, 8)])
def test_pointwise_function_is_reproduced_exactly(tile, overlap, batch):
    """A per-pixel function gives the same result tiled or not, in any dtype and layout."""
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    fn = lambda t: F.interpolate(t, scale_factor=2, mode="nearest") * 0.9  # noqa: E731
    seen = []
    out = tiling.upscale_tiled(fn, x, 2, tile, overlap, max_batch=batch, progress=seen.append)
    torch.testing.assert_close(out, fn(x))
    ys, xs = tiling.tile_grid(37, 53, tile, overlap)
    assert sum(seen) == len(ys) * len(xs) and max(seen) <= batch
    as_uint8 = tiling.upscale_tiled(fn, x, 2, tile, overlap, out_dtype=torch.uint8, channels_last=True)
    assert as_uint8.dtype == torch.uint8 and as_uint8.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(as_uint8, (fn(x) * 255).round().to(torch.uint8), rtol=0, atol=0)
    hwc = as_uint8.permute(0, 2, 3, 1)
    assert hwc.is_contiguous()  # free conversion to a numpy HWC image


def test_only_tiles_reach_the_device_and_the_output_is_cpu_uint8():
    x = torch.rand(1, 3, 100, 90)
    largest = []

    def fn(t):
        largest.append(t.numel())
        return F.interpolate(t, scale_factor=4, mode="nearest")

    out = tiling.upscale_tiled(fn, x, 4, 32, 8, out_dtype=torch.uint8)
    assert out.device.type == "cpu" and out.dtype == torch.uint8 and out.shape == (1, 3, 400, 360)
    assert max(largest) <= 3 * (32 + 2) ** 2  # never more than one tile at a time


class LargestFloatTensor(TorchDispatchMode):
    """Records the largest float tensor any torch operation creates while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def test_assembly_holds_only_tiles_and_overlap_strips_as_float():
    """A uint8 image in, uint8 out: no float copy of the input, the output or a band of tiles.

    The largest float tensors may be one tile's prediction and the strip that two rows of tiles
    share (overlap x scale rows, as wide as the output); a band of tiles as wide as the image,
    or the whole input or output as float, is several times larger and fails this test.
    """
    x = (torch.rand(1, 3, 128, 512, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    fn = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    tile, overlap, scale = 32, 8, 2
    with LargestFloatTensor() as mode:
        out = tiling.upscale_tiled(fn, x, scale, tile, overlap, out_dtype=torch.uint8)
    assert torch.equal(out, F.interpolate(x.float(), scale_factor=2, mode="nearest").to(torch.uint8))
    ys, _ = tiling.tile_grid(128, 512, tile, overlap)
    strip = 3 * (ys[0][1] - ys[1][0]) * scale * 512 * scale * 4
    band = 3 * (ys[0][1] - ys[0][0]) * scale * 512 * scale * 4
    assert mode.largest <= strip < band / 3
    assert strip < x.numel() * 4 / 2  # smaller than a float copy of the input


def test_wrong_output_size_is_a_clear_error():
    with pytest.raises(TorchSRError, match=r"expected \(\.\.\., 40, 40\) for its scale x2"):
        tiling.upscale_tiled(lambda t: t, torch.rand(1, 3, 20, 20), 2, None)


def _force_tiling(monkeypatch):
    """Pretend almost no memory is free, so that "auto" picks the smallest tile."""
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 20)


def _check_seamless(x: torch.Tensor, monkeypatch):
    model = photo_model(x)
    whole = Upscaler(model, "cpu", tile=None).upscale_tensor(x)
    _force_tiling(monkeypatch)
    counted = []
    auto = Upscaler(model, "cpu")  # default tile settings: tile "auto", default overlap
    monkeypatch.setattr(tiling, "upscale_tiled", _recording(tiling.upscale_tiled, counted))
    tiled = auto.upscale_tensor(x)
    tile = counted[0]
    ys, xs = tiling.tile_grid(*x.shape[-2:], tile, DEFAULT_TILE_OVERLAP)
    assert len(ys) >= 2 and len(xs) >= 2  # really tiled
    assert psnr(tiled, whole) >= 45
    # No seam: the tiled image has no line where it steps differently from the whole-image result...
    assert seam_score(tiled, whole) < 2e-3
    # ...while cutting the same tiles without blending leaves obvious seams on the same image.
    cropped = Upscaler(model, "cpu", tile=tile, tile_overlap=0).upscale_tensor(x)
    assert seam_score(cropped, whole) > 10 * max(seam_score(tiled, whole), 1e-3)
    assert psnr(cropped, whole) < psnr(tiled, whole) - 10


def _recording(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(args[3])  # the tile size
        return fn(*args, **kwargs)

    return wrapper


def test_tiled_photo_matches_whole_image(shared_data, monkeypatch):
    img = np.asarray(Image.open(shared_data / "benchmark" / "Set14" / "baboon.png").convert("RGB"))[100:292, 100:292]
    _check_seamless(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255, monkeypatch)


def test_tiled_synthetic_image_matches_whole_image(monkeypatch):
    _check_seamless(synthetic_photo(), monkeypatch)


def test_size_multiple_models_tile_on_their_pixel_grid(monkeypatch):
    """Pixel-unshuffle models (size_multiple 2) stay seamless: tiles start on even pixels."""
    x = synthetic_photo(150, 140, seed=3)
    model = photo_model(x, scale=2, pixel_unshuffle=2)
    whole = Upscaler(model, "cpu", tile=None).upscale_tensor(x)
    tiled = Upscaler(model, "cpu", tile=64, tile_overlap=16).upscale_tensor(x)
    assert psnr(tiled, whole) >= 45


def test_auto_tile_size_follows_free_memory(monkeypatch):
    per_pixel = 1000.0
    assert tiling.choose_tile(100, 100, 1, per_pixel, budget=1e8) is None  # fits whole
    assert tiling.choose_tile(1000, 1000, 1, per_pixel, budget=1e8, overlap=8) == 316
    assert tiling.choose_tile(1000, 1000, 4, per_pixel, budget=1e8, overlap=8, align=4) == 156  # 4 images per tile
    assert tiling.choose_tile(1000, 1000, 1, per_pixel, budget=1e3, overlap=32) == 128  # floor: 4 x overlap
    assert tiling.tiles_per_batch(100, 1, per_pixel, budget=3.5e7) == 3
    assert tiling.tiles_per_batch(100, 1, per_pixel, budget=1e12) == tiling.MAX_TILE_BATCH
    # However much memory is free, one call takes at most MAX_CALL_PIXELS input pixels, so that a
    # large image costs no more memory than a MAX_CALL_PIXELS one (512 x 512).
    assert tiling.choose_tile(512, 512, 1, per_pixel, budget=1e15) is None
    assert tiling.choose_tile(2048, 2048, 1, per_pixel, budget=1e15) == 512
    assert tiling.choose_tile(2048, 2048, 4, per_pixel, budget=1e15) == 256
    assert tiling.tiles_per_batch(512, 1, per_pixel, budget=1e15) == 1
    assert tiling.tiles_per_batch(256, 1, per_pixel, budget=1e15) == 4
    # The free-memory reading itself: /proc/meminfo, else sysconf.
    cpu = torch.device("cpu")
    free = tiling.available_memory(cpu)
    assert 0 < free < 1 << 50
    monkeypatch.setattr(tiling, "MEMINFO", tiling.Path("/nonexistent/meminfo"))
    assert 0 < tiling.available_memory(cpu) < 1 << 50


def test_activation_estimate_grows_with_model_width():
    small = tiling.activation_bytes_per_pixel(RRDBNet(2, 3, 8, 4, 1), 3, torch.device("cpu"))
    wide = tiling.activation_bytes_per_pixel(RRDBNet(2, 3, 32, 4, 1), 3, torch.device("cpu"))
    x4 = tiling.activation_bytes_per_pixel(RRDBNet(4, 3, 32, 4, 1), 3, torch.device("cpu"))
    assert 0 < small < wide < x4
    # The x4 network's biggest layer holds 32 channels at 16 output pixels per input pixel, in and out.
    assert x4 == pytest.approx(tiling.ACTIVATION_SAFETY * 2 * 32 * 16 * 4)
