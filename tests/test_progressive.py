"""Progressive resizing (configs/progressive_x2_x4_rrdb.json): x2 phase, then x4 phase with a larger crop.

The shipped config, shrunk as in test_systems.py: phase 1 trains x2 on 12-pixel crops, phase 2 x4 on
24-pixel crops from the phase-1 generator, then the x4 GAN stage.
"""
from __future__ import annotations

import re

import pytest
import torch
from test_systems import IMAGE, IMAGES, shrink, train_run
from trainer_fixtures import assert_same_state, deep_update, make_images

from torch_sr.model_files.model_file import load_model

CONFIG = "progressive_x2_x4_rrdb.json"
PHASE, GAN = 3, 2  # iterations of each phase and of the GAN stage


def progressive(folders, **changes):
    cfg = shrink(CONFIG, *folders, iterations=PHASE)
    cfg["training"]["num_iterations"] = GAN
    return deep_update(cfg, changes)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("progressive")
    return make_images(root / "train", IMAGES, (IMAGE, IMAGE)), make_images(root / "val", 1, (IMAGE, IMAGE), seed=1)


@pytest.fixture(scope="module")
def straight(folders, tmp_path_factory):
    """An uninterrupted run: its output folder."""
    workdir = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        assert train_run(progressive(folders), workdir, "-i", "100") == 0
    return workdir


def final(workdir, label):
    return next((workdir / "saved_models").glob(f"*_{label}_final_model.pth"))


def test_phases_grow_scale_and_crop_and_carry_every_fitting_tensor(folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a learning rate too small to move the weights in phase 2 shows what it started from
    cfg = progressive(folders)
    cfg["pretraining"]["phases"][1]["lr"] = 1e-12
    assert train_run(cfg, tmp_path) == 0
    log = (tmp_path / "runs" / "run" / "train.log").read_text()
    assert re.search(r"PSNR_phase1 stage \(phase 1/2\): x2, 12x12 HR crops, iterations 0/3", log)
    assert re.search(r"PSNR_phase2 stage \(phase 2/2\): x4, 24x24 HR crops, iterations 0/3", log)

    x2, x4 = load_model(final(tmp_path, "PSNR_x2_phase1")), load_model(final(tmp_path, "PSNR_x4_phase2"))
    assert (x2.info.scale, x4.info.scale) == (2, 4)
    old, new = x2.state_dict(), x4.state_dict()
    assert set(new) - set(old) == {"conv_up2.weight", "conv_up2.bias"} and set(old) <= set(new)
    # every tensor of the x2 generator was loaded, and the log says which are new
    assert f"PSNR_phase2 stage starts from the previous phase's generator: {len(old)} tensors loaded; " \
           "2 new in the model (e.g. conv_up2.weight)" in log  # fmt: skip
    for k, v in old.items():
        torch.testing.assert_close(new[k], v, rtol=0, atol=1e-9, msg=k)
    # the GAN stage continues from phase 2 at x4
    assert "ESRGAN stage starts from the previous stage's generator: 22 tensors loaded\n" in log
    assert load_model(final(tmp_path, "ESRGAN_x4")).info.scale == 4


def test_phase_files_are_named_by_scale_and_phase(straight):
    names = sorted(p.name.split("_", 1)[1] for p in (straight / "saved_models").glob("*_final_model.pth"))
    assert names == ["RRDB_ESRGAN_x4_final_model.pth", "RRDB_PSNR_x2_phase1_final_model.pth",
                     "RRDB_PSNR_x4_phase2_final_model.pth"]  # fmt: skip


@pytest.mark.parametrize("stop_after", [PHASE, PHASE + 1], ids=["at-the-phase-boundary", "in-phase-2"])
def test_resuming_in_phase_2_ends_with_the_same_weights(straight, folders, tmp_path, monkeypatch, stop_after):
    monkeypatch.chdir(tmp_path)
    cfg = progressive(folders)
    assert train_run(cfg, tmp_path, "-i", "100", "--stop-after", str(stop_after)) == 0
    label = "PSNR_x2_phase1" if stop_after == PHASE else "PSNR_x4_phase2"
    stopped = torch.load(next((tmp_path / "saved_models").glob(f"*_{label}_checkpoint.pth")), weights_only=True)
    assert (stopped["training"]["phase"], stopped["training"]["iteration"]) == (
        (0, PHASE) if stop_after == PHASE else (1, 1)
    )
    assert train_run(cfg, tmp_path, "-i", "100", "--resume") == 0
    for label in ("PSNR_x4_phase2", "ESRGAN_x4"):
        resumed = torch.load(final(tmp_path, label), weights_only=True)["state_dict"]
        expected = torch.load(final(straight, label), weights_only=True)["state_dict"]
        assert_same_state(resumed, expected, label)
