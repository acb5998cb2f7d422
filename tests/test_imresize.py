"""MATLAB-compatible imresize: hand-derived values, a scalar transcription of imresize.m, MATLAB's guarantees."""
import math

import numpy as np
import pytest
import torch

import torch_sr.data.imresize as imresize_module
from torch_sr.data.imresize import imresize, output_length

ROW = [10.0, 50.0, 90.0, 200.0]


def resize_row(values, **kwargs):
    out = imresize(torch.tensor([values], dtype=torch.float64), **kwargs)
    return out[0].tolist()


# Values derived by hand from the cubic kernel (a = -0.5) and MATLAB's mapping u = x/s + (1 - 1/s)/2,
# left = floor(u - width/2), mirrored indices (0 -> 1, -1 -> 2, n+1 -> n):
def test_upscale_x2_matches_hand_computation():
    a, b, c, d = ROW
    out = resize_row(ROW, output_size=(1, 8))
    # x=1: u=0.75, taps at -1,0,1,2 with weights -3/128, 29/128, 111/128, -9/128 -> 35/32 a - 3/32 b
    assert out[0] == pytest.approx((35 * a - 3 * b) / 32, abs=1e-12)
    # x=2: u=1.25, taps 0..3 weights -9/128, 111/128, 29/128, -3/128 -> (102 a + 29 b - 3 c) / 128
    assert out[1] == pytest.approx((102 * a + 29 * b - 3 * c) / 128, abs=1e-12)
    assert out[7] == pytest.approx((35 * d - 3 * c) / 32, abs=1e-12)  # mirror image at the right edge
    assert out[6] == pytest.approx((102 * d + 29 * c - 3 * b) / 128, abs=1e-12)


def test_downscale_x2_antialiased_matches_hand_computation():
    a, b, c, d = ROW
    out = resize_row(ROW, scale=0.5)
    # kernel widened to 8 taps: h(t) = 0.5 k(t/2); x=1: u=1.5 -> (70 a + 51 b + 13 c - 6 d) / 128
    assert len(out) == 2
    assert out[0] == pytest.approx((70 * a + 51 * b + 13 * c - 6 * d) / 128, abs=1e-12)
    assert out[1] == pytest.approx((70 * d + 51 * c + 13 * b - 6 * a) / 128, abs=1e-12)


def test_downscale_x2_without_antialiasing_matches_hand_computation():
    a, b, c, _ = ROW
    out = resize_row(ROW, scale=0.5, antialiasing=False)
    # plain kernel: weights k(1.5) = -1/16, k(0.5) = 9/16 at u = 1.5 -> (8 a + 9 b - c) / 16
    assert out[0] == pytest.approx((8 * a + 9 * b - c) / 16, abs=1e-12)


def matlab_reference(img: np.ndarray, out_h: int, out_w: int, sh: float, sw: float, aa: bool = True) -> np.ndarray:
    """imresize.m transcribed with scalar loops (1-based indices as in MATLAB), float64, 2-D."""

    def cubic(x):
        ax = abs(x)
        if ax <= 1:
            return 1.5 * ax**3 - 2.5 * ax**2 + 1
        if ax <= 2:
            return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
        return 0.0

    def resize_1d(vec, out_len, scale):
        n = len(vec)
        width = 4.0 / scale if (aa and scale < 1) else 4.0
        out = []
        for x in range(1, out_len + 1):
            u = x / scale + 0.5 * (1 - 1 / scale)
            left = math.floor(u - width / 2)
            taps = [(left + p) for p in range(math.ceil(width) + 2)]
            if aa and scale < 1:
                w = [scale * cubic(scale * (u - j)) for j in taps]
            else:
                w = [cubic(u - j) for j in taps]
            total = sum(w)
            aux = list(range(1, n + 1)) + list(range(n, 0, -1))
            out.append(sum(wk / total * vec[aux[(j - 1) % (2 * n)] - 1] for wk, j in zip(w, taps)))
        return out

    rows = np.array([resize_1d(list(col), out_h, sh) for col in img.T]).T  # along H first (tie: rows)
    return np.array([resize_1d(list(r), out_w, sw) for r in rows])


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((9, 12), {"scale": 0.25}),
        ((9, 12), {"scale": 1 / 3}),
        ((7, 5), {"scale": 3}),
        ((10, 11), {"scale": 0.6}),
        ((6, 8), {"output_size": (6, 8)}),
        ((12, 12), {"output_size": (5, 12)}),
        ((8, 10), {"scale": 0.5, "antialiasing": False}),
    ],
)
def test_matches_scalar_transcription_of_matlab(shape, kwargs):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, shape)
    out = imresize(torch.from_numpy(img), **kwargs).numpy()
    if "output_size" in kwargs:
        oh, ow = kwargs["output_size"]
        sh, sw = oh / shape[0], ow / shape[1]
    else:
        sh = sw = kwargs["scale"]
        oh, ow = math.ceil(sh * shape[0] - 1e-9), math.ceil(sw * shape[1] - 1e-9)
    ref = matlab_reference(img, oh, ow, sh, sw, kwargs.get("antialiasing", True))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-9)


def test_scale_one_is_identity():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    assert np.array_equal(imresize(img, 1.0), img)
    t = torch.rand(2, 3, 9, 11)
    assert torch.allclose(imresize(t, 1.0), t, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"scale": 0.25}, {"scale": 1 / 3}, {"scale": 2.5}, {"output_size": (7, 31)}])
def test_constant_image_stays_constant(kwargs):
    img = np.full((24, 18, 3), 137, dtype=np.uint8)
    out = imresize(img, **kwargs)
    assert (out == 137).all()
    t = torch.full((1, 24, 18), 0.3, dtype=torch.float64)
    assert torch.allclose(imresize(t, **kwargs), torch.full_like(imresize(t, **kwargs), 0.3), atol=1e-12)


def test_separable_axis_by_axis():
    t = torch.rand(3, 20, 15, dtype=torch.float64)
    both = imresize(t, output_size=(7, 40))
    rows_then_cols = imresize(imresize(t, output_size=(7, 15)), output_size=(7, 40))
    cols_then_rows = imresize(imresize(t, output_size=(20, 40)), output_size=(7, 40))
    assert torch.allclose(both, rows_then_cols, atol=1e-12)
    assert torch.allclose(both, cols_then_rows, atol=1e-12)  # linear: the order does not matter for floats


@pytest.mark.parametrize(
    "size,scale,expected", [(255, 1 / 3, 85), (7, 0.5, 4), (10, 0.37, 4), (5, 4, 20), (3, 1 / 4, 1), (12, 1 / 3, 4)]
)
def test_output_size_rule_is_ceil(size, scale, expected):
    assert output_length(size, scale) == expected
    assert imresize(torch.zeros(1, size), scale).shape[-1] == expected


def test_numpy_uint8_rounds_after_each_axis_like_matlab():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    out = imresize(img, 0.25)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3)
    t = torch.from_numpy(img).permute(2, 0, 1).double()
    step1 = torch.floor(imresize(t, output_size=(4, 20)).clamp(0, 255) + 0.5)  # MATLAB: rows first, uint8
    step2 = torch.floor(imresize(step1, output_size=(4, 5)).clamp(0, 255) + 0.5)
    assert np.array_equal(out, step2.permute(1, 2, 0).numpy().astype(np.uint8))
    assert np.array_equal(imresize(img[:, :, 1], 0.25), out[:, :, 1])  # HW works, channels independent


def test_uint8_saturates_overshoot():
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:, 4:] = 255  # a hard edge: the cubic kernel overshoots below 0 and above 255
    out = imresize(img, 3)
    ref = imresize(img.astype(np.float64), 3)
    assert ref.min() < 0 and ref.max() > 255
    assert out.min() == 0 and out.max() == 255


def test_float_numpy_stays_float_and_uint16_supported():
    img = np.random.default_rng(3).random((8, 8, 3)).astype(np.float32)
    out = imresize(img, 0.5)
    assert out.dtype == np.float32 and out.shape == (4, 4, 3)
    img16 = (img * 65535).astype(np.uint16)
    out16 = imresize(img16, 0.5)
    assert out16.dtype == np.uint16
    assert np.abs(out16.astype(np.float64) / 65535 - out).max() < 1e-3


def test_batched_equals_per_image_and_uint8_tensor():
    x = torch.rand(2, 3, 12, 16)
    batched = imresize(x, 0.5)
    for k in range(2):
        assert torch.allclose(batched[k], imresize(x[k], 0.5), atol=1e-6)
    u8 = (x[0] * 255).round().to(torch.uint8)
    out = imresize(u8, 0.5)
    assert out.dtype == torch.uint8
    assert np.array_equal(out.permute(1, 2, 0).numpy(), imresize(u8.permute(1, 2, 0).numpy(), 0.5))


def test_gather_path_equals_matmul_path(monkeypatch):
    x = torch.rand(3, 40, 30, dtype=torch.float64)
    dense_down, dense_up = imresize(x, 0.25), imresize(x, 3)
    monkeypatch.setattr(imresize_module, "DENSE_MAX", 0)
    assert torch.allclose(imresize(x, 0.25), dense_down, atol=1e-12)
    assert torch.allclose(imresize(x, 3), dense_up, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 33, 47)
    assert torch.allclose(imresize(x.cuda(), 0.25).cpu(), imresize(x, 0.25), atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.zeros(4, 4), 2, (8, 8))
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.zeros(4, 4), -1)
    with pytest.raises(TypeError, match="dtype"):
        imresize(np.zeros((4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="HW or HWC"):
        imresize(np.zeros((1, 4, 4, 3)), 2)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_integer_upscale_as_convolutions_is_imresize(scale):
    """`upscale_integer` (SRCNN's upscale, traceable for ONNX at any size) gives imresize's numbers, borders too."""
    from torch_sr.data.imresize import upscale_integer

    gen = torch.Generator().manual_seed(scale)
    for h, w in ((3, 5), (4, 4), (7, 13), (30, 17), (1, 9)):
        x = torch.rand(2, 3, h, w, generator=gen)
        torch.testing.assert_close(upscale_integer(x, scale), imresize(x, scale=scale), rtol=0, atol=1e-6)
