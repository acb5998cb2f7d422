"""benchmarks/restoration_headroom.py: the LR-level restoration measure photo_x4's card reports."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark_scripts import load_benchmark
from torch_sr.data.datasets import SREvalDataset
from torch_sr.data.degradation_specs import parse_degradation
from torch_sr.data.imresize import imresize
from torch_sr.evaluation import evaluate
from torch_sr.inference.image_io import write_image
from torch_sr.metrics.psnr import calculate_psnr
from torch_sr.model_files.model_file import load_model


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two small photos-like images, one of them grayscale (scored on its gray values, as test.py does)."""
    folder, rng = tmp_path_factory.mktemp("hr"), np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:80] / 64
    for name, channels in (("colour", 3), ("gray", 1)):
        planes = [np.sin(2 * np.pi * (rng.uniform(1, 4) * xx + rng.uniform(1, 4) * yy)) for _ in range(channels)]
        img = np.stack(planes, -1) * 90 + 128 + rng.normal(0, 6, (64, 80, channels))
        img = np.clip(img, 0, 255).astype(np.uint8)
        write_image(folder / f"{name}.png", img[..., 0] if channels == 1 else img)
    return sorted(folder.glob("*.png"))


def test_headroom_scores_the_lr_and_the_sr_as_test_py_does(images):
    headroom = load_benchmark("restoration_headroom")
    model = load_model("default_x4").eval()
    result = headroom.measure(model, model, images, "jpeg:40", [1.0, 0.5])

    spec = parse_degradation("jpeg:40")
    degraded = []
    for item in SREvalDataset(images, 4):
        hr = (item["hr"] * 255).round().byte().permute(1, 2, 0).numpy()
        clean = imresize(hr, 1 / 4)
        lr = spec.apply(hr, 4, item["name"])
        degraded.append(calculate_psnr(lr, clean[..., :1] if item["gray"] else clean, 1))
    assert result.images == 2
    assert result.degraded_lr == pytest.approx(np.mean(degraded), abs=1e-9)

    with torch.inference_mode():
        scored = evaluate(lambda lr: model(lr).clamp(0, 1), SREvalDataset(images, 4, degradation=spec), crop_border=4)
    assert result.model_sr == pytest.approx(scored.mean_psnr, abs=1e-9)  # test.py's score, grayscale file included

    (a_low, lr_low, sr_low), (a_high, lr_high, sr_high) = result.proxy
    assert (a_low, a_high) == (1.0, 0.5)  # rows ascend in LR PSNR: halving the error raises it
    assert lr_low == pytest.approx(result.restored_lr, abs=1e-9)  # a = 1 is the model's own restored LR
    assert lr_high > lr_low + 3  # half the error: about +6 dB
    assert sr_high > sr_low


def test_lr_needed_interpolates_between_the_rows_and_refuses_to_extrapolate():
    headroom = load_benchmark("restoration_headroom")
    result = headroom.Headroom(14, 31.0, 32.0, 25.0, [(1.0, 32.0, 25.0), (0.8, 34.0, 26.0)])
    assert result.lr_needed(25.5) == pytest.approx(33.0)
    assert result.lr_needed(25.0) == pytest.approx(32.0)
    assert result.lr_needed(26.5) is None and result.lr_needed(24.0) is None
    assert not math.isnan(result.lr_needed(26.0))
