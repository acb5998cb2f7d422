"""benchmarks/gan_texture.py: the measures the GAN models' cards report (sharpness, grid, JPEG blocks)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark_scripts import gan_texture
from torch_sr import weights
from torch_sr.cli import test as test_cli
from torch_sr.data.degradation_specs import parse_degradation
from torch_sr.inference.image_io import write_image
from torch_sr.model_files.model_file import load_model


def _smooth_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random field (a few sinusoids) with mild noise: natural-ish steps everywhere."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    field = sum(np.sin(2 * np.pi * (rng.uniform(0.5, 3) * xx + rng.uniform(0.5, 3) * yy) + rng.uniform(0, 6)) for _ in range(4))
    return 0.5 + 0.1 * field + rng.normal(0, 0.01, (size, size))


def test_blocks_score_finds_steps_at_the_block_borders_only():
    texture, rng = gan_texture(), np.random.default_rng(0)
    y = torch.from_numpy(_smooth_image(rng, 256)).float()
    assert abs(texture.blocks_score(y, 32) - 1) < 0.1  # no blocks: borders like everywhere else

    offsets = rng.uniform(-0.05, 0.05, (8, 8)).repeat(32, axis=0).repeat(32, axis=1)  # one level per 32x32 block
    blocky = y + torch.from_numpy(offsets).float()
    assert texture.blocks_score(blocky, 32) > 1.5
    assert abs(texture.blocks_score(blocky, 31) - 1) < 0.1  # another period misses them
    columns = y + torch.from_numpy(offsets[:1]).float()  # steps between columns only; then between rows only
    assert texture.blocks_score(columns, 32) > 1.3 and texture.blocks_score(columns.t(), 32) > 1.3


def test_measure_degrades_the_lr_as_test_py_does(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(2):
        rgb = np.stack([_smooth_image(rng, 64) for _ in range(3)], axis=2)
        write_image(tmp_path / f"im{i}.png", np.clip(rgb * 255, 0, 255).round().astype(np.uint8))
    write_image(tmp_path / "grey.png", np.clip(_smooth_image(rng, 64) * 255, 0, 255).round().astype(np.uint8))
    model = load_model(weights.model_path("default_x2")).eval()
    texture, jpeg = gan_texture(), parse_degradation("jpeg:20")

    degraded, clean = texture.measure(model, tmp_path, jpeg), texture.measure(model, tmp_path)
    assert degraded["psnr"] < clean["psnr"] - 0.5
    assert degraded["blocks"] > clean["blocks"]  # x2 model on JPEG LR: steps every 16 output pixels

    out = tmp_path.parent / "scores.json"
    assert test_cli.main(["default_x2", "-d", str(tmp_path), "--degrade", "jpeg:20", "--json", str(out)]) == 0
    (scored,) = json.loads(out.read_text())["results"]
    # the same LR (per-image seeds included) and test.py's PSNR (a grey file scored on its grey values)
    assert scored["mean"]["psnr"] == pytest.approx(degraded["psnr"], abs=1e-6)
