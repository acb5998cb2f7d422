"""Validation during training: the weighted image loss and the PSNR the best model is chosen by."""
import pytest
import torch
from trainer_fixtures import make_images

from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.config.validate import validate_config
from torch_sr.data.datasets import SREvalDataset
from torch_sr.training.objective import Objective
from torch_sr.training.validation import validate


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A tiny random x4 RRDBNet validated on two sets, with content weight 2 and TV weight 0.5."""
    root = tmp_path_factory.mktemp("val")
    sets = {
        name: SREvalDataset(sorted(make_images(root / name, 2, (32, 36), seed=seed).glob("*.png")), 4)
        for name, seed in (("a", 1), ("b", 2))
    }
    cfg = validate_config({"pretraining": {"content_loss_scaling": 2.0, "tv_loss_scaling": 0.5}})
    objective = Objective(cfg, cfg.pretraining, adversarial=False, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = RRDBNet(rrdb_channels=8, growth_channels=4, num_basic_blocks=1, num_dense_blocks=1)
    return validate(model, sets, objective, torch.device("cpu"))


def test_the_image_loss_is_weighted_as_in_training(scored):
    m = scored.metrics
    for name in ("a", "b"):
        assert m[f"{name}/content"] > 0 and m[f"{name}/tv"] > 0
        assert m[f"{name}/loss"] == pytest.approx(2.0 * m[f"{name}/content"] + 0.5 * m[f"{name}/tv"], rel=1e-6)
    assert scored.image_loss == pytest.approx((m["a/loss"] + m["b/loss"]) / 2, rel=1e-12)


def test_the_psnr_is_the_mean_over_the_validation_sets(scored):
    m = scored.metrics
    assert m["a/psnr"] != m["b/psnr"]
    assert scored.psnr == pytest.approx((m["a/psnr"] + m["b/psnr"]) / 2, rel=1e-12)
