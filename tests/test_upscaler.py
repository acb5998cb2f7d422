"""Upscaler: its interface, channel layouts (grey, Y-only, alpha), bit depths, TTA, precision, memory."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference_archs import randomize_
from torch_sr.archs.description import GeneratorInfo
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.errors import TorchSRError
from torch_sr.inference import tiling
from torch_sr.inference.channels import fill_transparent
from torch_sr.color import rgb_to_ycbcr, ycbcr_to_rgb
from torch_sr.inference.upscaler import Upscaler
from fake_terminal import FakeTerminal



def rand(*shape, seed=0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


class Bicubic(nn.Module):
    """A stand-in generator with a known answer: plain bicubic upscaling."""

    def __init__(self, scale: int = 2, channels: int = 3):
        super().__init__()
        self.info = GeneratorInfo(scale, channels, channels)

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.info.scale, mode="bicubic", align_corners=False)


class ConvShuffle(nn.Module):
    """A cheap stand-in with context and no symmetry: a random 3x3 conv into sub-pixels, around mid-grey."""

    def __init__(self, scale: int = 2, channels: int = 3, seed: int = 0):
        super().__init__()
        self.info = GeneratorInfo(scale, channels, channels)
        self.conv = nn.Conv2d(channels, channels * scale**2, 3, padding=1, padding_mode="replicate")
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=torch.Generator().manual_seed(seed)))
            self.conv.weight.mul_(0.1)
            self.conv.bias.fill_(0.5)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x - 0.5), self.info.scale)


@torch.no_grad()
def tiny_rrdbnet(scale: int = 2, channels: int = 3, **hparams) -> RRDBNet:
    """Random tiny RRDBNet, its output rescaled to mid-grey +- 0.15 so that little is clamped."""
    model = randomize_(RRDBNet(scale, channels, 8, 4, 2, **hparams), std=0.1).eval()
    y = model(torch.rand(1, channels, 24, 24, generator=torch.Generator().manual_seed(5)))
    k = 0.15 / y.std()
    model.conv_last.weight.mul_(k)
    model.conv_last.bias.mul_(k).add_(0.5 - k * y.mean())
    return model


def smooth_image(n=1, c=3, h=20, w=24, lo=0.2, hi=0.8) -> torch.Tensor:
    x = F.interpolate(rand(n, c, h // 4, w // 4), size=(h, w), mode="bilinear")
    return lo + (hi - lo) * x


def test_tensor_interface_shape_dtype_device_and_range():
    model = tiny_rrdbnet(scale=2)
    x = rand(2, 3, 11, 14)
    out = Upscaler(model, "cpu").upscale_tensor(x.half())  # any float dtype in
    assert out.shape == (2, 3, 22, 28) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert out.min() >= 0 and out.max() <= 1
    with torch.no_grad():
        expected = model(x.half().float()).clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_model_scale_is_authoritative():
    out = Upscaler(Bicubic(scale=3), "cpu").upscale_array(np.zeros((5, 7, 3), np.uint8))
    assert out.shape == (15, 21, 3)


def test_size_multiple_pads_by_reflection_and_crops_back():
    model = tiny_rrdbnet(scale=2, pixel_unshuffle=2)
    assert model.info.size_multiple == 2
    x = rand(1, 3, 13, 17)
    out = Upscaler(model, "cpu", tile=None).upscale_tensor(x)
    with torch.no_grad():
        expected = model(F.pad(x, (0, 1, 0, 1), mode="reflect"))[..., :26, :34].clamp(0, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_tta_averages_the_eight_flips_and_transposes():
    model = ConvShuffle(scale=2)
    x = rand(1, 3, 9, 12)
    out = Upscaler(model, "cpu", tta=True).upscale_tensor(x)
    expected = torch.zeros(1, 3, 18, 24)
    with torch.no_grad():
        for k in range(4):
            for transpose in (False, True):
                t = x.transpose(2, 3) if transpose else x
                y = torch.rot90(model(torch.rot90(t, k, (2, 3))), -k, (2, 3))
                expected += (y.transpose(2, 3) if transpose else y) / 8
    torch.testing.assert_close(out, expected.clamp(0, 1), rtol=0, atol=1e-5)
    assert (out - Upscaler(model, "cpu").upscale_tensor(x)).abs().max() > 1e-3  # the ensemble does something


def test_half_precision_on_cpu_warns_and_keeps_float32():
    model = ConvShuffle()
    x = rand(1, 3, 10, 10)
    with pytest.warns(UserWarning, match="fp16 needs a GPU"):
        upscaler = Upscaler(model, "cpu", precision="fp16")
    assert upscaler.autocast_dtype is None
    torch.testing.assert_close(upscaler.upscale_tensor(x), Upscaler(model, "cpu").upscale_tensor(x))


@pytest.mark.parametrize("native", [True, None, False])  # None: unknown (no /proc/cpuinfo)
def test_bf16_on_cpu_runs_unless_the_cpu_emulates_bfloat16(monkeypatch, native):
    monkeypatch.setattr("torch_sr.device.cpu_has_native_bf16", lambda: native)
    model = ConvShuffle()
    x = smooth_image(h=24, w=24)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        upscaler = Upscaler(model, "cpu", precision="bf16")
    fp32 = Upscaler(model, "cpu").upscale_tensor(x)
    if native is not False:  # no warning, and the model really computes in bf16
        assert not caught and upscaler.autocast_dtype == torch.bfloat16
        assert 0 < (upscaler.upscale_tensor(x) - fp32).abs().max() < 0.05
    else:  # emulated bf16 is slower than float32: said, and float32 it is
        assert "avx512_bf16 or amx_bf16" in str(caught[0].message) and upscaler.autocast_dtype is None
        torch.testing.assert_close(upscaler.upscale_tensor(x), fp32)


def test_forced_bf16_on_cpu_is_close_to_float32():
    model = ConvShuffle()
    x = smooth_image(h=24, w=24)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forcing autocast must not warn
        bf16 = Upscaler(model, "cpu", precision="bf16", force_autocast=True).upscale_tensor(x)
    fp32 = Upscaler(model, "cpu").upscale_tensor(x)
    assert torch.isfinite(bf16).all() and bf16.mean() > 0.2  # neither NaN nor black
    mse = ((bf16 - fp32) ** 2).mean()
    assert 0 < mse < 10 ** (-30 / 10)  # bf16 really ran, and stays within 30 dB of float32


class NaNInHalf(Bicubic):
    """Overflows whenever autocast is on, as some models do in fp16."""

    def forward(self, x):
        y = super().forward(x)
        return y * float("nan") if torch.is_autocast_enabled(x.device.type) else y


def test_non_finite_half_precision_output_is_recomputed_in_float32():
    x = smooth_image()
    with pytest.warns(UserWarning, match="non-finite"):
        out = Upscaler(NaNInHalf(), "cpu", precision="bf16", force_autocast=True).upscale_tensor(x)
    torch.testing.assert_close(out, Bicubic()(x).clamp(0, 1))


@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255), (np.uint16, 65535)])
def test_grey_stays_grey_on_an_rgb_model(dtype, peak):
    rng = np.random.default_rng(0)
    grey = (rng.random((10, 12)) * peak).astype(dtype)
    out = Upscaler(Bicubic(2, 3), "cpu").upscale_array(grey)
    assert out.shape == (20, 24) and out.dtype == dtype
    expected = Bicubic(2, 1)(torch.from_numpy(grey.astype(np.float32))[None, None] / peak).clamp(0, 1)
    assert np.abs(out.astype(np.int64) - np.rint(expected[0, 0].numpy() * peak)).max() <= 1
    # A model with colour of its own: its output is turned back to grey with BT.601 luma.
    model = ConvShuffle(channels=3)
    out = Upscaler(model, "cpu").upscale_tensor(torch.from_numpy(grey.astype(np.float32))[None, None] / peak)
    with torch.no_grad():
        rgb = model((torch.from_numpy(grey.astype(np.float32)) / peak).expand(1, 3, -1, -1))
    luma = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(out, luma.clamp(0, 1), rtol=0, atol=1e-5)


def test_y_only_model_upscales_luma_and_bicubic_chroma():
    model = ConvShuffle(channels=1)
    x = smooth_image(lo=0.35, hi=0.65)
    out = Upscaler(model, "cpu").upscale_tensor(x)
    assert out.shape == (1, 3, 40, 48)
    ycbcr = rgb_to_ycbcr(x)
    with torch.no_grad():
        expected_y = model(ycbcr[:, :1])
    expected_chroma = F.interpolate(ycbcr[:, 1:], scale_factor=2, mode="bicubic", align_corners=False)
    got = rgb_to_ycbcr(out)
    unclamped = ((ycbcr_to_rgb(torch.cat([expected_y, expected_chroma], 1)) - 0.5).abs() < 0.5).all(1, keepdim=True)
    assert unclamped.float().mean() > 0.9
    torch.testing.assert_close(got[:, :1][unclamped], expected_y[unclamped], rtol=0, atol=1e-4)
    mask = unclamped.expand(-1, 2, -1, -1)
    torch.testing.assert_close(got[:, 1:][mask], expected_chroma[mask], rtol=0, atol=1e-4)


def test_ycbcr_is_the_bt601_studio_range():
    rgb = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    ycbcr = rgb_to_ycbcr(rgb) * 255
    torch.testing.assert_close(ycbcr[0, 0, 0], torch.tensor([16 + 65.481, 235.0, 16.0]), rtol=0, atol=1e-3)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, rtol=0, atol=1e-6)


def _red_disc_rgba(size=32) -> np.ndarray:
    """An anti-aliased red disc on a transparent background whose colour is black, as files store it."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    alpha = np.clip(size / 3 - r, 0, 1)
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0] = np.where(alpha > 0, 255, 0)
    img[..., 3] = np.rint(alpha * 255)
    return img


def test_rgba_edges_are_not_darkened_and_alpha_is_upscaled():
    img = _red_disc_rgba()
    out = Upscaler(Bicubic(2), "cpu").upscale_array(img)
    assert out.shape == (64, 64, 4) and out.dtype == np.uint8
    visible = out[..., 3] > 10
    assert out[..., 0][visible].min() >= 250  # red stays red up to the soft edge
    # Upscaling straight colour with its black transparent pixels would have darkened the edge.
    naive = Upscaler(Bicubic(2), "cpu").upscale_array(np.ascontiguousarray(img[..., :3]))
    assert naive[..., 0][visible].min() < 200
    alpha = Bicubic(2)(torch.from_numpy(img[..., 3].astype(np.float32))[None, None] / 255).clamp(0, 1)
    assert np.abs(out[..., 3].astype(int) - np.rint(alpha[0, 0].numpy() * 255)).max() <= 1


def test_rgba_with_a_real_model_and_opaque_alpha():
    img = _red_disc_rgba(16)
    out = Upscaler(tiny_rrdbnet(), "cpu").upscale_array(img)
    assert out.shape == (32, 32, 4) and out[..., 3].std() > 0
    model = ConvShuffle()
    opaque = img.copy()
    opaque[..., 3] = 255
    out = Upscaler(model, "cpu").upscale_array(opaque)
    assert (out[..., 3] == 255).all()
    # The colour of an opaque RGBA image is upscaled exactly like the RGB image.
    rgb = Upscaler(model, "cpu").upscale_array(np.ascontiguousarray(opaque[..., :3]))
    np.testing.assert_array_equal(out[..., :3], rgb)
    grey_alpha = Upscaler(model, "cpu").upscale_array(np.stack([img[..., 0], img[..., 3]], axis=2))
    assert grey_alpha.shape == (32, 32, 2)


def test_fill_transparent_keeps_visible_pixels_and_fills_the_rest_from_them():
    colour = torch.zeros(1, 3, 8, 8)
    alpha = torch.zeros(1, 1, 8, 8)
    colour[:, :, :3, :3] = torch.tensor([0.2, 0.6, 0.9]).view(1, 3, 1, 1)
    alpha[:, :, :3, :3] = 0.5
    colour[:, :, 0, 0] = 0.1  # visible pixels keep their own colour
    filled = fill_transparent(colour, alpha)
    assert torch.equal(filled[:, :, :3, :3], colour[:, :, :3, :3])
    far = filled[0, :, 7, 7]
    assert (far - torch.tensor([0.2, 0.6, 0.9])).abs().max() < 0.1  # the nearest visible colour, not black


def test_sixteen_bit_keeps_sixteen_bits():
    ramp = np.linspace(1000, 3000, 16 * 16).reshape(16, 16).astype(np.uint16)  # a ramp finer than 8 bits
    img = np.stack([ramp, ramp // 2, 65535 - ramp], axis=2)
    out = Upscaler(Bicubic(2), "cpu").upscale_array(img)
    assert out.dtype == np.uint16 and out.shape == (32, 32, 3)
    assert len(np.unique(out[..., 0])) > 300  # far more levels than 8 bits could give in this range
    expected = Bicubic(2)(torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] / 65535)
    expected = np.rint(expected[0].permute(1, 2, 0).clamp(0, 1).numpy() * 65535)
    assert np.abs(out - expected).max() <= 1


def test_float_arrays_stay_float():
    img = np.random.default_rng(1).random((6, 5, 3)).astype(np.float64)
    out = Upscaler(Bicubic(2), "cpu").upscale_array(img)
    assert out.dtype == np.float64 and out.shape == (12, 10, 3) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Upscaler(Bicubic(), "cpu").upscale_array(np.zeros((4, 4, 5), np.uint8)), "1-4 channels"),
        (lambda: Upscaler(Bicubic(), "cpu").upscale_array(np.zeros((4, 4), np.int32)), "dtype int32"),
        (lambda: Upscaler(Bicubic(), "cpu").upscale_tensor(torch.zeros(3, 4, 4)), "float \\(N, C, H, W\\)"),
        (lambda: Upscaler(Bicubic(), "cpu", precision="fp8"), "precision 'fp8'"),
        (lambda: Upscaler(Bicubic(), "cpu", tile=0), "tile must be"),
        (lambda: Upscaler(Bicubic(), "cpu", tile_overlap=-1), "overlap"),
        (lambda: Upscaler(nn.Conv2d(3, 3, 1), "cpu"), "not a torch_sr generator: it has no `info`"),
        (lambda: Upscaler(Bicubic(2, 2), "cpu").upscale_array(np.zeros((4, 4, 3), np.uint8)), "2-channel model"),
    ],
)
def test_bad_arguments_are_clear_errors(make, match):
    with pytest.raises(TorchSRError, match=match):
        make()


def _count_tiles(monkeypatch, batches=None) -> list:
    """Record the tile size (and tiles per batch) of every tiling call."""
    seen = []
    real = tiling.upscale_tiled

    def counting(fn, lr, scale, tile, *args, **kwargs):
        seen.append(tile)
        if batches is not None:
            batches.append(kwargs["max_batch"])
        return real(fn, lr, scale, tile, *args, **kwargs)

    monkeypatch.setattr(tiling, "upscale_tiled", counting)
    return seen


def test_auto_tiles_only_when_the_image_would_not_fit(monkeypatch):
    seen = _count_tiles(monkeypatch)
    x = rand(1, 3, 140, 150)
    whole = Upscaler(Bicubic(2), "cpu").upscale_tensor(x)
    assert seen == [None]
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 20)
    tiled = Upscaler(Bicubic(2), "cpu", progress=True).upscale_tensor(x)
    assert seen[1] == 128
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-3)  # bicubic only differs at the tile edges


def test_small_tiles_are_batched_when_memory_allows(monkeypatch):
    batches = []
    seen = _count_tiles(monkeypatch, batches)
    x = rand(1, 3, 100, 100)
    out = Upscaler(Bicubic(2), "cpu", tile=32, tile_overlap=8).upscale_tensor(x)
    assert seen == [32] and batches == [tiling.MAX_TILE_BATCH]
    torch.testing.assert_close(out, Bicubic(2)(x).clamp(0, 1), rtol=0, atol=1e-3)
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 20)
    Upscaler(Bicubic(2), "cpu", tile=32, tile_overlap=8).upscale_tensor(x)
    assert batches[-1] == 1


class OutOfMemoryAbove(Bicubic):
    def __init__(self, limit: int):
        super().__init__(2)
        self.limit = limit

    def forward(self, x):
        if x.shape[-1] * x.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().forward(x)


def test_out_of_memory_retries_with_smaller_tiles(monkeypatch):
    seen = _count_tiles(monkeypatch)
    x = smooth_image(h=300, w=280)
    with pytest.warns(UserWarning, match="retrying with tile"):
        out = Upscaler(OutOfMemoryAbove(200 * 200), "cpu").upscale_tensor(x)
    assert seen[0] is None and seen[-1] is not None and seen[-1] <= 200
    torch.testing.assert_close(out, Bicubic(2)(x).clamp(0, 1), rtol=0, atol=2e-3)
    with pytest.raises(TorchSRError, match="out of memory .* use a smaller tile"):
        Upscaler(OutOfMemoryAbove(100), "cpu", tile=64).upscale_tensor(x)


def test_progress_bar_counts_tiles_on_a_terminal(monkeypatch):
    import sys

    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    img = np.zeros((16, 16, 3), np.uint8)
    Upscaler(ConvShuffle(), device="cpu", tile=8, tile_overlap=0, progress=True).upscale_array(img)
    assert "0/4 [" in term.text and "tile/s" in term.text  # a bar over the 4 tiles (cleared when done)
    term.text = ""
    Upscaler(ConvShuffle(), device="cpu", tile=8, tile_overlap=0, progress=False).upscale_array(img)
    assert term.text == ""


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_converted_to_another_dtype_computes_in_it(dtype):
    """`model.half()` is a Real-ESRGAN habit: the input follows the weights' dtype (also for auto tiles)."""
    x = smooth_image()
    for tile in (None, "auto", 16):
        want = Upscaler(tiny_rrdbnet(), device="cpu", tile=tile).upscale_tensor(x)
        out = Upscaler(tiny_rrdbnet().to(dtype), device="cpu", tile=tile).upscale_tensor(x)
        assert out.dtype == torch.float32 and (out - want).abs().max() < 0.02


def test_inputs_that_cannot_be_upscaled_are_named():
    upscaler = Upscaler(Bicubic(), device="cpu")
    with pytest.raises(TorchSRError, match="the input holds NaN or inf"):
        upscaler.upscale_tensor(torch.full((1, 3, 8, 8), float("nan")))
    with pytest.raises(TorchSRError, match="empty: 8x0 pixels"):
        upscaler.upscale_tensor(torch.rand(1, 3, 0, 8))
    with pytest.raises(TorchSRError, match="empty: 0x5 pixels"):
        upscaler.upscale_array(np.zeros((5, 0, 3), np.uint8))
    with pytest.raises(TorchSRError, match="tile must be"):
        Upscaler(Bicubic(), device="cpu", tile=True)
