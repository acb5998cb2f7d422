"""Y conversion, PSNR, SSIM (against a direct numpy transcription of ssim_index.m) and optional LPIPS."""
import math
import sys
import types
import urllib.error

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from torch_sr.errors import TorchSRError
from torch_sr.metrics import lpips as lpips_module
from torch_sr.color import rgb_to_y, y_to_gray
from torch_sr.metrics.lpips import calculate_lpips
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.metrics.ssim import calculate_ssim


def rand_img(seed, shape=(24, 20, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_rgb_to_y_known_values():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    y = rgb_to_y(px)
    np.testing.assert_allclose(y[0], [16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
    t = torch.from_numpy(px).permute(2, 0, 1).float() / 255
    yt = rgb_to_y(t)
    assert yt.shape == (1, 1, 5)
    np.testing.assert_allclose(yt[0].numpy(), y, atol=1e-4)
    assert rgb_to_y(torch.from_numpy(px).permute(2, 0, 1)).dtype == torch.float64  # uint8 tensor read as 0..255
    np.testing.assert_allclose(y_to_gray(rgb_to_y(np.full((1, 1, 3), 77, np.uint8))), [[77]], atol=1e-9)


def test_psnr_known_mse():
    ref = np.full((10, 10, 3), 100, dtype=np.uint8)
    img = ref + 5
    assert calculate_psnr(img, ref, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 25))
    # Y of a uniform +5 shift on all channels is a shift of 5 * 219/255
    assert calculate_psnr(img, ref) == pytest.approx(10 * math.log10(255**2 / (5 * 219 / 255) ** 2))
    assert calculate_psnr(ref, ref) == math.inf


def test_crop_border_shaves_edges():
    ref = rand_img(0)
    img = ref.copy()
    img[:2] = 0
    img[:, -2:] = 255
    assert calculate_psnr(img, ref, crop_border=2) == math.inf
    assert calculate_psnr(img, ref, crop_border=1) < 40
    with pytest.raises(TorchSRError, match="crop_border"):
        calculate_psnr(img, ref, crop_border=10)


def test_float_tensors_are_quantised_like_saved_images():
    ref = rand_img(1)
    img = rand_img(2)
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    noisy = (t + (torch.rand_like(t) - 0.5) * 0.9 / 255).clamp(0, 1)  # < half a level: quantises back to img
    expected = calculate_psnr(img, ref)
    assert calculate_psnr(noisy, ref) == pytest.approx(expected)
    assert calculate_psnr(noisy[None], torch.from_numpy(ref).permute(2, 0, 1).float() / 255) == pytest.approx(expected)
    assert calculate_ssim(noisy, ref) == pytest.approx(calculate_ssim(img, ref))
    over = torch.full((3, 8, 8), 1.7)  # out-of-range floats clamp like a saved image
    assert calculate_psnr(over, np.full((8, 8, 3), 255, np.uint8)) == math.inf


def test_rgb_psnr_is_mean_over_channels():
    ref, img = rand_img(3), rand_img(4)
    mse = np.mean((img.astype(float) - ref) ** 2)
    assert calculate_psnr(img, ref, y_channel=False) == pytest.approx(10 * math.log10(255**2 / mse))


def test_grayscale_reference_scored_on_gray_values():
    gray_ref = rand_img(5, (24, 20, 1))
    gray_img = rand_img(6, (24, 20, 1))
    mse = np.mean((gray_img.astype(float) - gray_ref) ** 2)
    expected = 10 * math.log10(255**2 / mse)
    assert calculate_psnr(gray_img, gray_ref) == pytest.approx(expected)
    assert calculate_psnr(gray_img[:, :, 0], gray_ref[:, :, 0]) == pytest.approx(expected)  # HW arrays
    rgb_img = np.repeat(gray_img, 3, axis=2)  # an RGB output of a gray image: its gray-preserving luma
    assert calculate_psnr(rgb_img, gray_ref) == pytest.approx(expected)
    # both RGB: BT.601 Y, whose range is 219/255 of the gray one
    both_rgb = calculate_psnr(rgb_img, np.repeat(gray_ref, 3, axis=2))
    assert both_rgb == pytest.approx(expected + 20 * math.log10(255 / 219))
    assert calculate_psnr(gray_img, gray_ref, y_channel=False) == pytest.approx(expected)
    # all channels: a grayscale image counts as three equal channels, in both metrics
    assert calculate_psnr(rgb_img, gray_ref, y_channel=False) == pytest.approx(expected)
    assert calculate_ssim(rgb_img, gray_ref, y_channel=False) == pytest.approx(calculate_ssim(gray_img, gray_ref))


def ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """ssim_index.m with numpy: 2-D Gaussian window, 'valid' filtering, mean of the map."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g)
    w /= w.sum()

    def filt(img):
        return np.einsum("ijkl,kl->ij", sliding_window_view(img, (11, 11)), w)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    s1, s2, s12 = filt(a * a) - mu1**2, filt(b * b) - mu2**2, filt(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


def test_ssim_matches_reference_transcription():
    ref = rand_img(7, (30, 26, 3))
    img = np.clip(ref.astype(int) + np.random.default_rng(8).integers(-30, 31, ref.shape), 0, 255).astype(np.uint8)
    ya, yb = rgb_to_y(img), rgb_to_y(ref)
    assert calculate_ssim(img, ref) == pytest.approx(ssim_reference(ya, yb), abs=1e-10)
    assert calculate_ssim(img, ref, crop_border=3) == pytest.approx(ssim_reference(ya[3:-3, 3:-3], yb[3:-3, 3:-3]), abs=1e-10)
    per_channel = [ssim_reference(img[:, :, c].astype(float), ref[:, :, c].astype(float)) for c in range(3)]
    assert calculate_ssim(img, ref, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-10)
    assert calculate_ssim(ref, ref) == pytest.approx(1.0)


def test_bad_inputs_are_clear_errors():
    a = rand_img(9)
    with pytest.raises(TorchSRError, match="differ in size"):
        calculate_psnr(a, a[:10])
    with pytest.raises(TorchSRError, match="uint8"):
        calculate_psnr(a.astype(np.float32), a)
    with pytest.raises(TorchSRError, match="batch"):
        calculate_psnr(torch.rand(2, 3, 24, 20), a)
    with pytest.raises(TorchSRError, match="11x11"):
        calculate_ssim(a[:12, :12], a[:12, :12], crop_border=2)


# -- LPIPS (optional) -----------------------------------------------------------------------------


@pytest.fixture
def fresh_lpips():
    lpips_module.lpips_model.cache_clear()
    yield
    lpips_module.lpips_model.cache_clear()


def test_lpips_missing_package_is_a_clear_error(monkeypatch, fresh_lpips):
    monkeypatch.setitem(sys.modules, "lpips", None)  # makes `import lpips` raise ImportError
    with pytest.raises(TorchSRError, match="pip install lpips"):
        calculate_lpips(rand_img(0), rand_img(1))


def test_lpips_missing_weights_offline_is_a_clear_error(monkeypatch, fresh_lpips):
    def offline(**kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=offline))
    with pytest.raises(TorchSRError, match="alexnet-owt-7be5be79.pth"):
        calculate_lpips(rand_img(0), rand_img(1))


def test_lpips_feeds_rgb_in_minus_one_one(monkeypatch, fresh_lpips):
    seen = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()

        def forward(self, a, b):
            seen.append((a, b))
            return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    gray = np.zeros((8, 8, 1), np.uint8)
    white = np.full((8, 8, 3), 255, np.uint8)
    assert calculate_lpips(gray, white) == pytest.approx(2.0)
    a, b = seen[-1]
    assert a.shape == b.shape == (1, 3, 8, 8) and float(a.min()) == -1 and float(b.max()) == 1
    assert calculate_lpips(white, white, crop_border=2) == 0
    assert seen[-1][0].shape == (1, 3, 4, 4)
    for border in (4, -1):
        with pytest.raises(TorchSRError, match=f"crop_border={border} leaves nothing of a 8x8 image"):
            calculate_lpips(white, white, crop_border=border)
