"""test.py --degrade: deterministic test-time degradations, parsed from specs, scored beside bicubic."""
import json

import numpy as np
import pytest
from PIL import Image

from torch_sr.cli.test import main
from torch_sr.data.datasets import SREvalDataset
from torch_sr.data.degradation_specs import parse_degradation
from torch_sr.data.degradations import gaussian_blur, jpeg_compress
from torch_sr.data.imresize import imresize
from torch_sr.errors import TorchSRError


@pytest.fixture
def hr():
    rng = np.random.default_rng(0)
    return np.array(Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).resize((80, 64), Image.BICUBIC))


def test_specs_are_applied_as_named(hr):
    lr = imresize(hr, 1 / 4)
    assert np.array_equal(parse_degradation("jpeg:40").apply(hr, 4, "a"), jpeg_compress(lr, 40))
    blurred = parse_degradation("blur:1.5+jpeg:70").apply(hr, 4, "a")
    assert np.array_equal(blurred, jpeg_compress(imresize(gaussian_blur(hr, 1.5), 1 / 4), 70))
    noisy = parse_degradation("noise:10").apply(hr, 4, "a").astype(float)
    assert (noisy - lr).std() == pytest.approx(10.0, rel=0.1)  # 16x20x3 samples
    assert parse_degradation("realesrgan").apply(hr, 4, "a").shape == (16, 20, 3)


def test_the_same_image_degrades_the_same_way_every_run_and_differently_from_others(hr):
    for spec in ("noise:10+jpeg:70", "realesrgan"):
        d = parse_degradation(spec)
        assert np.array_equal(d.apply(hr, 4, "baby"), parse_degradation(spec).apply(hr, 4, "baby"))
        assert not np.array_equal(d.apply(hr, 4, "baby"), d.apply(hr, 4, "bird"))


@pytest.mark.parametrize(
    "spec, message",
    [("jpeg", "cannot read"), ("jpeg:0", "1..100"), ("jpeg:40.5", "whole number"), ("noise:-1", "noise sigma must be in 0..255"),
     ("blur:0", "blur sigma must be in 0.1..50"), ("jpeg:40+blur:1", "comes first"), ("gauss:3", "cannot read"),
     ("", "cannot read"), ("jpeg:inf", "cannot read 'jpeg:inf'"), ("blur:1e-300", "0.1..50, got 1e-300"),
     ("blur:1e6", "0.1..50"), ("noise:inf", "cannot read"), ("noise:300", "0..255")],
)  # fmt: skip
def test_bad_specs_name_the_part_and_the_forms(spec, message):
    with pytest.raises(TorchSRError, match=message):
        parse_degradation(spec)


def test_spec_text_is_canonical():
    assert parse_degradation(" Noise:10.0+JPEG:70 ").text == "noise:10+jpeg:70"


def test_eval_dataset_degrades_its_lr(tmp_path, hr):
    Image.fromarray(hr).save(tmp_path / "pic.png")
    clean = SREvalDataset([tmp_path / "pic.png"], 4)[0]
    jpeg = SREvalDataset([tmp_path / "pic.png"], 4, degradation=parse_degradation("jpeg:20"))[0]
    assert jpeg["hr"].equal(clean["hr"]) and not jpeg["lr"].equal(clean["lr"])


def test_test_cli_scores_degraded_lr_beside_bicubic_of_the_same_lr(tmp_path, hr, capsys):
    Image.fromarray(hr).save(tmp_path / "pic.png")

    def scores(*extra):
        assert main(["--bicubic", "-d", str(tmp_path), "--json", "-", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    clean, degraded = scores(), scores("--degrade", "noise:20+jpeg:30")
    assert clean["degradation"] == "none" and degraded["degradation"] == "noise:20+jpeg:30"
    assert degraded["results"][0]["degradation"] == "noise:20+jpeg:30"
    assert degraded["results"][0]["mean"]["bicubic_psnr"] < clean["results"][0]["mean"]["bicubic_psnr"] - 1
    assert main(["--bicubic", "-d", str(tmp_path), "--degrade", "jpeg:40"]) == 0
    assert "(LR: jpeg:40)" in capsys.readouterr().out
    assert main(["--bicubic", "-d", str(tmp_path), "--degrade", "jpeg:400"]) == 2
    assert "1..100" in capsys.readouterr().err
