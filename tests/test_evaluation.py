"""evaluate(): the published bicubic numbers, scoring of model outputs, saving, table and JSON."""
import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from torch_sr.data.catalogue import resolve_images
from torch_sr.data.datasets import SREvalDataset
from torch_sr.data.imresize import imresize
from torch_sr.errors import TorchSRError
from torch_sr.evaluation import comparison_table, evaluate
from torch_sr.metrics import lpips as lpips_module
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.metrics.ssim import calculate_ssim

# Bicubic rows of the published tables (PSNR / SSIM on Y, `scale` pixels shaved; VDSR/EDSR/RCAN papers).
PUBLISHED_BICUBIC = [
    ("set5", 4, 28.42, 0.8104),
    ("set14", 4, 26.00, 0.7027),
    ("set5", 2, 33.66, 0.9299),
    ("set5", 3, 30.39, 0.8682),
    ("set14", 2, 30.24, 0.8688),
    ("set14", 3, 27.55, 0.7742),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,scale,psnr,ssim", PUBLISHED_BICUBIC)
def test_bicubic_reproduces_published_numbers(shared_data, name, scale, psnr, ssim):
    ds = SREvalDataset(resolve_images(name, "test", shared_data, download=False), scale)
    result = evaluate(None, ds, crop_border=scale)
    assert result.mean_bicubic_psnr == pytest.approx(psnr, abs=0.02)
    assert result.mean_bicubic_ssim == pytest.approx(ssim, abs=0.002)


def save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for k, (h, w) in enumerate([(34, 41), (24, 24)]):
        small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
        out.append(save(tmp_path / "hr" / f"im{k}.png", np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))))
    return out


def oracle(dataset):
    """An 'upscaler' that returns the true HR image for each LR (scores inf / 1)."""
    table = {dataset[i]["lr"].numpy().tobytes(): dataset[i]["hr"] for i in range(len(dataset))}
    return lambda lr: table[lr[0].numpy().tobytes()][None]


def test_perfect_upscaler_scores_inf_and_one(images):
    ds = SREvalDataset(images, 2)
    result = evaluate(oracle(ds), ds, crop_border=2, name="mine")
    assert [s.name for s in result.images] == ["im0", "im1"]
    assert all(s.psnr == math.inf and s.ssim == pytest.approx(1.0) for s in result.images)
    assert result.mean_psnr == math.inf
    assert all(s.bicubic_psnr < 60 for s in result.images)
    assert json.loads(json.dumps(result.to_dict()))["mean"]["psnr"] == "inf"


def test_scores_are_those_of_the_quantised_images(images):
    ds = SREvalDataset(images, 2)
    noisy = lambda lr: (torch.nn.functional.interpolate(lr, scale_factor=2, mode="nearest") + 0.002).clamp(0, 1)
    result = evaluate(noisy, ds, crop_border=2, y_channel=False)
    item = ds[0]
    sr = (noisy(item["lr"][None])[0] * 255).round().byte().permute(1, 2, 0).numpy()
    hr = (item["hr"] * 255).round().byte().permute(1, 2, 0).numpy()
    assert result.images[0].psnr == pytest.approx(calculate_psnr(sr, hr, 2, y_channel=False))
    assert result.images[0].ssim == pytest.approx(calculate_ssim(sr, hr, 2, y_channel=False))
    bic = imresize((item["lr"] * 255).round().byte().permute(1, 2, 0).numpy(), 2)
    assert result.images[0].bicubic_psnr == pytest.approx(calculate_psnr(bic, hr, 2, y_channel=False))


def test_gray_files_scored_on_gray_values(tmp_path):
    gray = np.asarray(Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 9), dtype=np.uint8)).resize((36, 36)))
    path = save(tmp_path / "g.png", gray)
    result = evaluate(None, SREvalDataset([path], 4), crop_border=4)
    bic = imresize(imresize(gray, 0.25), 4)  # the all-grayscale MATLAB pipeline
    assert result.images[0].bicubic_psnr == pytest.approx(calculate_psnr(bic, gray, 4), abs=1e-9)


def test_save_dir_and_callback(images, tmp_path):
    ds = SREvalDataset(images, 2)
    seen = []
    up = lambda lr: torch.nn.functional.interpolate(lr, scale_factor=2, mode="bilinear")
    evaluate(up, ds, crop_border=2, save_dir=tmp_path / "out", on_image=seen.append)
    saved = np.asarray(Image.open(tmp_path / "out" / "im0.png"))
    assert np.array_equal(saved, seen[0].sr.permute(1, 2, 0).numpy())
    assert seen[0].sr.dtype == torch.uint8 and seen[0].lr.shape == (3, 17, 20)
    assert seen[1].score.psnr == pytest.approx(calculate_psnr(seen[1].sr, seen[1].hr, 2))
    evaluate(None, ds, crop_border=2, save_dir=tmp_path / "bic")  # bicubic-only mode saves bicubic images
    assert np.array_equal(np.asarray(Image.open(tmp_path / "bic" / "im1.png")), seen[1].bicubic.permute(1, 2, 0).numpy())


def test_wrong_output_size_is_a_clear_error(images):
    ds = SREvalDataset(images, 2)
    with pytest.raises(TorchSRError, match="does the model upscale x2"):
        evaluate(lambda lr: torch.nn.functional.interpolate(lr, scale_factor=4), ds, crop_border=2)


def test_table_and_dict(images):
    ds = SREvalDataset(images, 2)
    result = evaluate(oracle(ds), ds, crop_border=2, name="Mine")
    table = str(result)
    lines = table.splitlines()
    assert lines[0].startswith("Mine x2: PSNR (dB) / SSIM on Y (BT.601), 2 px shaved, 2 images")
    assert lines[1].split() == ["image", "bicubic", "PSNR", "bicubic", "SSIM", "PSNR", "SSIM"]
    assert lines[2].split()[0] == "im0" and lines[-1].split()[0] == "mean"
    assert f"{result.mean_bicubic_psnr:.2f}" in lines[-1]
    no_bicubic = evaluate(oracle(ds), ds, crop_border=2, with_bicubic=False)
    assert no_bicubic.columns() == ["psnr", "ssim"] and no_bicubic.images[0].bicubic_psnr is None
    bic_only = evaluate(None, ds, crop_border=0, y_channel=False)
    d = bic_only.to_dict()
    assert set(d["mean"]) == {"bicubic_psnr", "bicubic_ssim"} and d["channel"] == "rgb" and d["crop_border"] == 0
    assert len(d["images"]) == 2 and "psnr" not in d["images"][0]


def test_comparison_table_puts_models_side_by_side(images):
    ds = SREvalDataset(images, 2)
    bilinear = lambda lr: torch.nn.functional.interpolate(lr, scale_factor=2, mode="bilinear")
    perfect, blurry = evaluate(oracle(ds), ds, crop_border=2, name="Mine"), evaluate(bilinear, ds, crop_border=2)
    lines = comparison_table([("perfect", perfect), ("blurry", blurry)]).splitlines()
    assert lines[0].startswith("Mine x2: PSNR (dB) / SSIM on Y (BT.601), 2 px shaved, 2 images, perfect ")
    assert lines[1].split() == ["image", "bicubic", "PSNR", "bicubic", "SSIM", "perfect", "PSNR", "perfect", "SSIM",
                                "blurry", "PSNR", "blurry", "SSIM"]  # fmt: skip
    b = blurry.images[1]
    assert lines[3].split() == ["im1", f"{b.bicubic_psnr:.2f}", f"{b.bicubic_ssim:.4f}", "inf", "1.0000",
                                f"{b.psnr:.2f}", f"{b.ssim:.4f}"]  # fmt: skip
    assert lines[-1].split()[5:] == [f"{blurry.mean_psnr:.2f}", f"{blurry.mean_ssim:.4f}"]
    assert lines[1].index("blurry PSNR") + len("blurry PSNR") == lines[3].index(f"{b.psnr:.2f}") + len(f"{b.psnr:.2f}")
    other_set = evaluate(bilinear, SREvalDataset(images[:1], 2), crop_border=2)
    with pytest.raises(ValueError, match="'other' was not scored on the same images"):
        comparison_table([("perfect", perfect), ("other", other_set)])


def test_lpips_column_when_available(images, monkeypatch):
    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()

        def forward(self, a, b):
            return (a - b).abs().mean().view(1, 1, 1, 1)

    lpips_module.lpips_model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS))
    try:
        ds = SREvalDataset(images, 2)
        result = evaluate(oracle(ds), ds, crop_border=2, lpips=True)
    finally:
        lpips_module.lpips_model.cache_clear()
    assert result.images[0].lpips == 0 and result.images[0].bicubic_lpips > 0
    assert "LPIPS" in str(result)
