"""Real-ESRGAN's degradation model and the simpler presets: kernels, noise, resize, JPEG, seeding, config."""
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from torch_sr.config.schema import DegradationConfig
from torch_sr.config.validate import validate_config
from torch_sr.data import blur_kernels as bk
from torch_sr.data.realistic_degradations import Degradation, add_noise, build_degradation, jpeg, unsharp_mask
from torch_sr.errors import ConfigError


def covariance(kernel: torch.Tensor) -> torch.Tensor:
    """Second moments (xx, xy; xy, yy) of a kernel about its centre: its shape and orientation."""
    k = kernel.double()
    n = k.shape[-1]
    ax = torch.arange(n, dtype=torch.float64) - n // 2
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    return torch.tensor([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])


@pytest.mark.parametrize(
    "kernel",
    [
        bk.gaussian_kernel2d(21, 2.0),
        bk.gaussian_kernel2d(15, 3.0, 1.0, 0.7),
        bk.generalized_gaussian_kernel2d(13, 2.0, 1.0, -1.0, 0.5),
        bk.generalized_gaussian_kernel2d(13, 2.0, 2.0, 0.0, 4.0),
        bk.plateau_kernel2d(21, 1.5, 0.8, 2.0, 1.5),
        bk.sinc_kernel2d(9, math.pi / 3),
        bk.sinc_kernel2d(21, math.pi / 5),
    ],
)
def test_kernels_sum_to_one_are_odd_square_and_point_symmetric(kernel):
    assert kernel.dtype == torch.float32 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(kernel, kernel.flip(0, 1))  # so convolution and correlation agree


def test_gaussian_kernel_has_the_requested_sigmas_and_orientation():
    # Well sampled (sigma >= 1.5) and far from truncation (5 sigma in 31 taps), the second moments are the
    # covariance itself.
    for theta in (0.0, math.pi / 6, math.pi / 2, -2.0):
        cov = covariance(bk.gaussian_kernel2d(31, 3.0, 1.5, theta))
        values, vectors = torch.linalg.eigh(cov)
        assert values.sqrt().tolist() == pytest.approx([1.5, 3.0], abs=1e-3)
        major = vectors[:, 1]  # the direction of sigma_x
        assert abs(float(major @ torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64))) == pytest.approx(
            1.0, abs=1e-6
        )
    iso = covariance(bk.gaussian_kernel2d(31, 2.0))
    assert float(iso[0, 1]) == pytest.approx(0.0, abs=1e-9) and float(iso[0, 0]) == pytest.approx(4.0, abs=1e-3)


def test_generalized_gaussian_shapes():
    # beta 1 is exactly the Gaussian; beta < 1 puts more weight in the tails, beta > 1 less.
    torch.testing.assert_close(bk.generalized_gaussian_kernel2d(15, 2.0, 1.0, 0.3, 1.0), bk.gaussian_kernel2d(15, 2.0, 1.0, 0.3))
    heavy = bk.generalized_gaussian_kernel2d(15, 2.0, 2.0, 0.0, 0.5)
    flat = bk.generalized_gaussian_kernel2d(15, 2.0, 2.0, 0.0, 4.0)
    gauss = bk.gaussian_kernel2d(15, 2.0)
    assert heavy[7, 0] > gauss[7, 0] > flat[7, 0]
    plateau = bk.plateau_kernel2d(21, 2.0, 2.0, 0.0, 2.0)
    assert plateau[10, 11] / plateau[10, 10] > gauss[10, 11] / gauss[10, 10]  # a flatter top


def test_sinc_kernel_is_a_low_pass_with_the_requested_cutoff():
    k = bk.sinc_kernel2d(41, math.pi / 2)
    spectrum = torch.fft.fftshift(torch.fft.fft2(k.double())).abs()
    centre = 20
    freq = torch.fft.fftshift(torch.fft.fftfreq(41, dtype=torch.float64)) * 2 * math.pi
    fy, fx = torch.meshgrid(freq, freq, indexing="ij")
    radius = (fx**2 + fy**2).sqrt()
    assert float(spectrum[centre, centre]) == pytest.approx(1.0, abs=1e-6)
    assert float(spectrum[radius < 0.35 * math.pi].min()) > 0.85  # passes well below the cut-off
    assert float(spectrum[(radius > 0.7 * math.pi) & (radius < math.pi)].max()) < 0.15  # stops well above it


def test_random_kernels_are_reproducible_and_follow_the_spec():
    spec = bk.KernelSpec(
        {"iso": 1.0, "aniso": 1.0, "generalized_iso": 1.0, "generalized_aniso": 1.0, "plateau_iso": 1.0,
         "plateau_aniso": 1.0}, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), 0.1, (7, 21),
    )  # fmt: skip
    a = [bk.random_kernel(torch.Generator().manual_seed(s), spec) for s in range(40)]
    b = [bk.random_kernel(torch.Generator().manual_seed(s), spec) for s in range(40)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    sizes = {k.shape[0] for k in a}
    assert sizes <= set(range(7, 22, 2)) and len(sizes) > 3
    only_iso = bk.KernelSpec({"iso": 1.0}, (2.0, 2.0), (1.0, 1.0), (1.0, 1.0), 0.0, (21, 21))
    torch.testing.assert_close(bk.random_kernel(torch.Generator().manual_seed(3), only_iso), bk.gaussian_kernel2d(21, 2.0))


def test_gaussian_noise_has_the_requested_standard_deviation():
    img = torch.full((1, 3, 256, 256), 0.5)
    noisy = add_noise(img, torch.Generator().manual_seed(0), 1.0, (20.0, 20.0), (1.0, 1.0), 0.0)
    assert float((noisy - img).std() * 255) == pytest.approx(20.0, rel=0.02)
    assert float((noisy - img).mean() * 255) == pytest.approx(0.0, abs=0.3)
    grey = add_noise(img, torch.Generator().manual_seed(1), 1.0, (20.0, 20.0), (1.0, 1.0), 1.0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert float((grey - img).std() * 255) == pytest.approx(20.0, rel=0.02)


def test_poisson_noise_grows_with_its_scale_and_the_signal():
    ramp = torch.linspace(0, 1, 256).repeat(3, 256, 1)[None]
    spread = []
    for scale in (0.5, 2.0):
        noisy = add_noise(ramp, torch.Generator().manual_seed(0), 0.0, (1.0, 1.0), (scale, scale), 0.0)
        spread.append(float((noisy - ramp)[..., 100:156].std()))
    assert spread[1] == pytest.approx(4 * spread[0], rel=0.1)  # noise is multiplied by the scale
    noisy = add_noise(ramp, torch.Generator().manual_seed(0), 0.0, (1.0, 1.0), (1.0, 1.0), 0.0)
    dark, bright = (noisy - ramp)[..., 10:40].std(), (noisy - ramp)[..., 200:230].std()
    assert bright > 1.5 * dark  # shot noise: variance proportional to the intensity


@pytest.mark.parametrize("quality", [10, 40, 75, 95])
def test_jpeg_is_what_pillow_saves_and_decodes(quality):
    rng = np.random.default_rng(quality)
    small = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    img = np.array(Image.fromarray(small).resize((40, 48), Image.BICUBIC))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    expected = np.array(Image.open(io.BytesIO(buf.getvalue())))
    out = jpeg(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, quality)
    assert np.array_equal(out[0].mul(255).round().byte().permute(1, 2, 0).numpy(), expected)


def batch(n=4, size=(64, 48), seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.nn.functional.interpolate(torch.rand(n, 3, size[0] // 8, size[1] // 8, generator=g), size=size,
                                         mode="bicubic", align_corners=False).clamp(0, 1)  # fmt: skip
    return hr, torch.nn.functional.interpolate(hr, scale_factor=0.25, mode="area")


@pytest.mark.parametrize("preset", ["jpeg", "noise_jpeg", "realesrgan"])
@pytest.mark.parametrize("size", [(64, 48), (96, 96), (32, 44)])
def test_every_preset_gives_lr_of_the_requested_size_on_8_bit_levels(preset, size):
    hr, lr = batch(4, size)
    out, target = Degradation(DegradationConfig(preset=preset), 4)(hr, lr, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, size[0] // 4, size[1] // 4) and target.shape == hr.shape
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)
    assert not torch.equal(out, lr)


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    hr, lr = batch(6)
    d = Degradation(DegradationConfig(mix={"realesrgan": 1, "noise_jpeg": 1, "bicubic": 1}), 4)
    a, _ = d(hr, lr, torch.Generator().manual_seed(5))
    b, _ = d(hr, lr, torch.Generator().manual_seed(5))
    c, _ = d(hr, lr, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_mix_draws_each_items_preset():
    hr, lr = batch(64, (32, 32))
    out, _ = Degradation(DegradationConfig(mix={"bicubic": 0.5, "jpeg": 0.5}), 4)(hr, lr, torch.Generator().manual_seed(0))
    clean = [bool(torch.equal(out[i], lr[i])) for i in range(64)]
    assert 16 < sum(clean) < 48


def test_usm_target_sharpens_edges_and_leaves_flat_areas():
    img = torch.full((1, 3, 40, 160), 0.3)
    img[..., 80:] = 0.7
    sharp = unsharp_mask(img)
    # 60 px from the edge, beyond both 25-px blurs (detail and mask): untouched
    assert float(sharp[0, 0, 20, 20]) == pytest.approx(0.3, abs=1e-6)
    assert float(sharp[0, 0, 20, 78]) < 0.3 and float(sharp[0, 0, 20, 81]) > 0.7  # overshoot on both sides
    hr, lr = batch()
    _, target = Degradation(DegradationConfig(preset="realesrgan"), 4)(hr, lr, torch.Generator().manual_seed(0))
    assert not torch.equal(target, hr)  # published default: gt_usm
    _, target = Degradation(DegradationConfig(preset="realesrgan", gt_usm=False), 4)(hr, lr, torch.Generator())
    assert torch.equal(target, hr)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_and_gpu_degrade_alike():
    hr, lr = batch(4)
    d = Degradation(DegradationConfig(preset="realesrgan"), 4)
    cpu, _ = d(hr, lr, torch.Generator().manual_seed(0))
    gpu, _ = d(hr.cuda(), lr.cuda(), torch.Generator().manual_seed(0))
    # Each JPEG quantises to 8 bits, so a float difference can flip a level: compare in levels.
    assert float((cpu - gpu.cpu()).abs().mean() * 255) < 0.5


def test_config_presets_keys_and_errors():
    assert build_degradation(DegradationConfig(), 4) is None  # clean bicubic stays the default
    cfg = validate_config({"degradation": {"preset": "realesrgan"}}).degradation
    assert cfg.usm_target and cfg.noise_range == (1.0, 30.0) and cfg.jpeg_range2 == (30, 95)
    assert cfg.kernel_prob["iso"] == 0.45 and cfg.resize_prob == {"up": 0.2, "down": 0.7, "keep": 0.1}
    assert not validate_config({"degradation": {"mix": {"jpeg": 1, "bicubic": 1}}}).degradation.usm_target
    bad = [
        ({"preset": "jpeg", "noise_range": [1, 5]}, "no preset in use reads it"),
        ({"preset": "jpg"}, "preset"),
        ({"mix": {"realesrgan": 1, "jepg": 1}}, "mix/jepg: unknown preset"),
        ({"preset": "jpeg", "mix": {"jpeg": 1}}, "not both"),
        ({"preset": "realesrgan", "kernel_prob": {"isso": 1}}, "did you mean 'iso'"),
        ({"preset": "jpeg", "jpeg_range": [90, 30]}, "low must not exceed high"),
        ({"preset": "jpeg", "jpeg_range": [0, 30]}, "jpeg_range"),
        ({"preset": "realesrgan", "resize_prob": {"up": 0, "down": 0, "keep": 0}}, "sum to 0"),
        ({"preset": "realesrgan", "nois_range": [1, 2]}, "did you mean 'degradation/noise_range'"),
    ]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message):
            validate_config({"degradation": section})


def test_training_feeds_the_generator_the_degraded_batches(tmp_path, monkeypatch):
    from trainer_fixtures import make_images, tiny_config, write_config

    from torch_sr.archs.rrdbnet import RRDBNet
    from torch_sr.cli.train import main

    degraded, inputs, seeds = [], [], []
    call, forward = Degradation.__call__, RRDBNet.forward

    def spy_call(self, hr, lr, gen):
        seeds.append(gen.initial_seed())
        out = call(self, hr, lr, gen)
        degraded.append(out[0].clone())
        return out

    def spy_forward(self, x):
        inputs.append(x.detach().clone())
        return forward(self, x)

    monkeypatch.setattr(Degradation, "__call__", spy_call)
    monkeypatch.setattr(RRDBNet, "forward", spy_forward)
    train, val = make_images(tmp_path / "train", 4, (32, 32)), make_images(tmp_path / "val", 1, (32, 32), seed=1)
    cfg = tiny_config(train, val, training={"enabled": False}, pretraining={"num_iterations": 3, "val_interval": 10},
                      degradation={"preset": "jpeg", "jpeg_range": [5, 5]}, logging={"dir": str(tmp_path / "runs")})  # fmt: skip
    assert main([str(write_config(tmp_path / "c.json", cfg)), "--output-dir", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert len(degraded) == 3 and len(set(seeds)) == 3  # a fresh draw each iteration
    for batch in degraded:
        assert any(x.shape == batch.shape and torch.equal(x, batch) for x in inputs)


def test_the_final_sinc_cuts_off_between_pi_3_and_pi_at_every_size(monkeypatch):
    """Real-ESRGAN draws the final sinc's cut-off from [pi/3, pi]; [pi/5, pi] is for the rounds' 13+ tap kernels."""
    drawn = []

    def recording_sinc(size, omega):
        drawn.append((size, omega))
        return bk.gaussian_kernel2d(size, 1.0)

    monkeypatch.setattr(bk, "sinc_kernel2d", recording_sinc)
    cfg = DegradationConfig(preset="realesrgan", sinc_prob=0, sinc_prob2=0, final_sinc_prob=1)
    hr, lr = batch(4, (48, 48))
    degrade = Degradation(cfg, 4)
    for seed in range(12):
        degrade(hr, lr, torch.Generator().manual_seed(seed))
    assert len({size for size, _ in drawn if size >= 13}) >= 3  # large kernels were drawn
    assert min(omega for _, omega in drawn) >= math.pi / 3 and max(omega for _, omega in drawn) <= math.pi
