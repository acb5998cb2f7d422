"""The trainer learns: on real photos the training loss falls and validation PSNR beats bicubic.

A fast stand-in for the smoke run (`configs/smoke_cpu.json`, RRDBNet, a few hundred iterations):
the ResNet-18 UNet starts as bilinear upscaling, so 200 iterations on T91 suffice to beat bicubic on
crops of Set5, where a from-scratch RRDBNet needs longer than a test may take.
"""
import re

import pytest
from PIL import Image
from trainer_fixtures import write_config

from torch_sr.cli.train import main

pytestmark = pytest.mark.slow  # hundreds of training iterations on real photos


def test_loss_falls_and_validation_psnr_beats_bicubic(shared_data, tmp_path, monkeypatch):
    val = tmp_path / "set5_crops"
    val.mkdir()
    for path in sorted((shared_data / "benchmark" / "Set5").glob("*.png")):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        img.crop((w // 2 - 48, h // 2 - 48, w // 2 + 48, h // 2 + 48)).save(val / path.name)
    stage = {"cr_patch_size": [32, 32], "train_datasets": [str(shared_data / "train" / "T91")],
             "val_datasets": [str(val)], "hard_transforms": False}  # fmt: skip
    cfg = {
        "scale_factor": 4,
        "batch_size": 8,
        "pretraining": {**stage, "num_iterations": 200, "lr": 1e-3, "scheduler": "cosine", "val_interval": 50},
        "training": {**stage, "num_iterations": 1},
        "generator": {"arch": "unet_resnet18", "decoder_channels": [32, 32, 16, 16, 16], "pretrained_encoder": False},
        "perceptual_loss": {"layer_weights": {"conv1_1": 1.0}, "vgg_type": "vgg11", "pretrained": False},
        "data": {"cache": True},
        "logging": {"log_interval": 20, "tensorboard": False},
    }
    monkeypatch.chdir(tmp_path)
    assert main([str(write_config(tmp_path / "q.json", cfg)), "--device", "cpu", "--stop-after", "200"]) == 0
    log = next((tmp_path / "runs").glob("*/train.log")).read_text()
    losses = [float(x) for x in re.findall(r"PSNR \d+/200 epoch \d+: content ([\d.e-]+)", log)]
    assert len(losses) == 10 and sum(losses[-3:]) < 0.95 * sum(losses[:3])
    val = re.findall(
        r"PSNR validation at iteration \d+: set5_crops/psnr ([\d.]+) .* set5_crops/bicubic_psnr ([\d.]+) .* "
        r"set5_crops/content ([\d.]+)",
        log,
    )
    assert len(val) == 4
    (_, _, first_loss), (psnr, bicubic, last_loss) = val[0], val[-1]
    assert float(last_loss) < 0.95 * float(first_loss)
    assert float(psnr) > float(bicubic) + 0.2, (psnr, bicubic)


def test_the_smoke_config_trains_both_stages(shared_data, tmp_path, monkeypatch):
    """configs/smoke_cpu.json as shipped, only shortened: both stages run and the PSNR loss falls."""
    import json
    from pathlib import Path

    cfg = json.loads((Path(__file__).resolve().parents[1] / "configs" / "smoke_cpu.json").read_text())
    data = [str(shared_data / "train" / "T91"), str(shared_data / "train" / "BSDS200")]
    cfg["pretraining"].update(num_iterations=40, train_datasets=data, val_datasets=[], val_interval=1000)
    cfg["training"].update(num_iterations=4, train_datasets=data, val_datasets=[], val_interval=1000)
    cfg["logging"].update(log_interval=5, tensorboard=False)
    monkeypatch.chdir(tmp_path)
    assert main([str(write_config(tmp_path / "smoke.json", cfg)), "--device", "cpu", "--no-progress"]) == 0
    log = next((tmp_path / "runs").glob("*/train.log")).read_text()
    losses = [float(x) for x in re.findall(r"PSNR \d+/40 epoch \d+: content ([\d.e-]+)", log)]
    assert len(losses) == 8 and sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses
    assert re.search(r"ESRGAN 4/4 epoch \d+: .*d_total", log)
    assert sorted(p.name.split("_", 1)[1] for p in (tmp_path / "saved_models").glob("*_final_model.pth")) == [
        "RRDB_ESRGAN_x4_final_model.pth", "RRDB_PSNR_x4_final_model.pth"]
