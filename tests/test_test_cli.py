"""test.py: tables, saved SR images, comparison figures, JSON, the bicubic mode and user errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.checkpoint.model_file import save_model
from torch_sr.cli.test import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    model = RRDBNet(scale_factor=4, rrdb_channels=8, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    return save_model(model, tmp_path_factory.mktemp("models") / "tiny_x4.pth")


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(48, 52), (40, 40)]):
        small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(tmp_path / f"pic{k}.png")
    return tmp_path


def run_json(capsys, argv):
    assert main([*argv, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


def test_model_on_a_folder_saves_images_figures_and_json(tiny_model, folder, tmp_path, capsys):
    out = tmp_path / "results"
    code = main([str(tiny_model), "-d", str(folder), "-o", str(out), "-s", "1", "--json", str(out / "r.json"),
                 "--tile", "16", "--device", "cpu"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    name = folder.name
    assert f"{name} x4: PSNR (dB) / SSIM on Y (BT.601), 4 px shaved, 2 images" in printed
    assert "bicubic PSNR" in printed and "pic0" in printed and "mean" in printed
    sr = np.asarray(Image.open(out / name / "pic0.png"))
    assert sr.shape == (48, 52, 3)
    figures = sorted((out / name).glob("*_comparison.png"))
    assert len(figures) == 1
    fig = np.asarray(Image.open(figures[0]))
    assert fig.shape[1] > 4 * 300  # four panels: LR | bicubic | SR | HR
    result = json.loads((out / "r.json").read_text())
    res = result["results"][0]
    assert result["scale"] == 4 and res["channel"] == "y" and res["crop_border"] == 4
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"} <= set(res["mean"])
    assert [im["name"] for im in res["images"]] == ["pic0", "pic1"]
    best = max(res["images"], key=lambda im: im["psnr"])["name"]
    assert figures[0].name == f"{best}_comparison.png"  # the best image by SR PSNR


def test_tiling_does_not_change_scores(tiny_model, folder, capsys):
    whole = run_json(capsys, [str(tiny_model), "-d", str(folder), "--tile", "none"])
    tiled = run_json(capsys, [str(tiny_model), "-d", str(folder), "--tile", "16"])
    assert whole["results"][0]["mean"]["psnr"] == pytest.approx(tiled["results"][0]["mean"]["psnr"], abs=0.01)


def test_rgb_and_crop_border_options(tiny_model, folder, capsys):
    res = run_json(capsys, [str(tiny_model), "-d", str(folder), "--rgb", "--crop-border", "0"])["results"][0]
    assert res["channel"] == "rgb" and res["crop_border"] == 0
    y = run_json(capsys, [str(tiny_model), "-d", str(folder)])["results"][0]
    assert res["mean"]["psnr"] != y["mean"]["psnr"]


def test_bicubic_only_needs_no_model(folder, tmp_path, capsys):
    data = run_json(capsys, ["--bicubic", "--scale", "2", "-d", str(folder)])
    res = data["results"][0]
    assert data["model"] is None and res["scale"] == 2 and res["crop_border"] == 2
    assert set(res["mean"]) == {"bicubic_psnr", "bicubic_ssim"}
    assert main(["--bicubic", "-d", str(folder), "-s", "1", "-o", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o" / folder.name).glob("*_comparison.png"))) == 1


def test_set5_from_shared_data(tiny_model, shared_data, capsys):
    data = run_json(capsys, [str(tiny_model), "-d", "set5", "--data-root", str(shared_data), "--no-download"])
    res = data["results"][0]
    assert res["dataset"] == "Set5" and len(res["images"]) == 5
    assert res["mean"]["bicubic_psnr"] == pytest.approx(28.42, abs=0.02)
    assert res["mean"]["psnr"] < res["mean"]["bicubic_psnr"]  # an untrained model is worse than bicubic


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--bicubic", "MODEL"], "drop MODEL"),
        ([], "give a MODEL"),
        (["MODEL", "--scale", "2"], "does not match"),
        (["MODEL", "-d", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
        (["MODEL", "--tile", "-3"], "--tile"),
        (["MODEL", "--lpips", "-d", "FOLDER"], "lpips"),
        (["missing.pth"], "not found"),
    ],
)
def test_user_errors_exit_2_with_a_message(tiny_model, folder, capsys, monkeypatch, argv, message):
    monkeypatch.setitem(__import__("sys").modules, "lpips", None)
    from torch_sr.metrics.lpips import lpips_model

    lpips_model.cache_clear()
    argv = [str(tiny_model) if a == "MODEL" else str(folder) if a == "FOLDER" else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
