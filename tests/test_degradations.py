"""modcrop, Gaussian blur and JPEG: shapes, exact behaviour, reproducibility from a seed."""
import numpy as np
import pytest
import torch

from torch_sr.data.degradations import gaussian_blur, gaussian_kernel, jpeg_compress, modcrop


def test_modcrop_numpy_and_tensor():
    img = np.arange(10 * 13 * 3).reshape(10, 13, 3)
    out = modcrop(img, 4)
    assert out.shape == (8, 12, 3)
    assert np.array_equal(out, img[:8, :12])  # crops bottom/right, keeps the top-left origin
    assert modcrop(img[:, :, 0], 3).shape == (9, 12)
    t = torch.zeros(2, 3, 10, 13)
    assert modcrop(t, 4).shape == (2, 3, 8, 12)
    assert modcrop(t, 1).shape == t.shape
    with pytest.raises(ValueError):
        modcrop(img, 0)


def test_gaussian_kernel_normalised_symmetric():
    g = gaussian_kernel(1.5)
    assert g.numel() == 11  # radius ceil(3 sigma) = 5
    assert float(g.sum()) == pytest.approx(1.0)
    assert torch.allclose(g, g.flip(0))
    assert int(g.argmax()) == 5


def test_gaussian_blur_preserves_constants_and_smooths():
    flat = np.full((16, 16, 3), 90, dtype=np.uint8)
    assert np.array_equal(gaussian_blur(flat, 2.0), flat)
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    out = gaussian_blur(noise, 1.0)
    assert out.dtype == np.uint8 and out.shape == noise.shape
    assert out.astype(float).std() < 0.5 * noise.astype(float).std()
    t = torch.rand(2, 3, 16, 16)
    tb = gaussian_blur(t, 1.0)
    assert tb.shape == t.shape and tb.dtype == t.dtype
    # uint8 numpy and float tensor paths agree up to rounding
    assert np.abs(out.astype(float) - gaussian_blur(torch.from_numpy(noise).double(), 1.0).numpy()).max() <= 0.5 + 1e-9


def test_random_sigma_and_quality_reproducible_from_seed():
    img = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    a = gaussian_blur(img, (0.5, 3.0), rng=7)
    b = gaussian_blur(img, (0.5, 3.0), rng=7)
    assert np.array_equal(a, b)
    outs = {gaussian_blur(img, (0.5, 3.0), rng=s).tobytes() for s in range(5)}
    assert len(outs) > 1
    j1 = jpeg_compress(img, (10, 90), rng=3)
    assert np.array_equal(j1, jpeg_compress(img, (10, 90), rng=3))
    assert len({jpeg_compress(img, (10, 90), rng=s).tobytes() for s in range(6)}) > 1


def test_jpeg_quality_controls_error():
    rng = np.random.default_rng(2)
    img = np.clip(rng.normal(128, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
    err = {q: np.abs(jpeg_compress(img, q).astype(float) - img).mean() for q in (10, 50, 95)}
    assert err[10] > err[50] > err[95] > 0
    gray = img[:, :, :1]
    out = jpeg_compress(gray, 50)
    assert out.shape == gray.shape and out.dtype == np.uint8
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    tj = jpeg_compress(t, 50)
    assert tj.shape == t.shape and tj.dtype == torch.float32
    assert np.array_equal((tj * 255).round().byte().permute(1, 2, 0).numpy(), jpeg_compress(img, 50))
    with pytest.raises(ValueError):
        jpeg_compress(img, 0)
