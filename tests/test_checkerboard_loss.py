"""The checkerboard loss: zero for errors that do not depend on the sub-pixel phase, the grid's size otherwise."""
import pytest
import torch
import torch.nn.functional as F
from training_steps import assert_trains

from torch_sr.config.validate import validate_config
from torch_sr.losses.checkerboard import checkerboard_loss


def test_phase_independent_errors_cost_nothing():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 64, 64)
    blocky = F.interpolate(torch.randn(2, 3, 16, 16), scale_factor=4, mode="nearest")  # constant in each cell
    assert checkerboard_loss(hr + blocky, hr, 4).item() == pytest.approx(0, abs=1e-7)
    assert checkerboard_loss(hr + 0.3, hr, 4).item() == pytest.approx(0, abs=1e-7)


def test_a_grid_pattern_costs_its_mean_deviation():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 64, 64)
    pattern = torch.randn(4, 4)
    grid = pattern.repeat(16, 16)  # the same offset at each phase of every cell
    expected = (pattern - pattern.mean()).abs().mean()
    assert checkerboard_loss(hr + grid, hr, 4).item() == pytest.approx(expected.item(), rel=1e-5)
    # texture in the error that is not tied to the phase adds (almost) nothing
    noisy = checkerboard_loss(hr + grid + 0.05 * torch.randn(1, 3, 64, 64), hr, 4).item()
    assert noisy == pytest.approx(expected.item(), rel=0.05)


def test_gradient_descent_removes_a_grid():
    hr = torch.rand(1, 1, 32, 32)
    offsets = torch.randn(4, 4, requires_grad=True)
    assert_trains(lambda: checkerboard_loss(hr + offsets.repeat(8, 8), hr, 4), [offsets], steps=100, lr=0.05,
                  below=0.05)


def test_small_and_ragged_images():
    hr = torch.rand(1, 3, 13, 22)
    grid = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(7, 11)[:13, :22]
    assert checkerboard_loss(hr + grid, hr, 2, window=8).item() == pytest.approx(1.0)  # windows shrink to fit
    with pytest.raises(ValueError, match="3x8 image has no whole 4x4 cell"):
        checkerboard_loss(torch.rand(1, 1, 3, 8), torch.rand(1, 1, 3, 8), 4)


def test_configured_in_the_gan_stage():
    cfg = validate_config({"training": {"g_checkerboard_loss_scaling": 0.5}})
    assert cfg.training.loss_weights["checkerboard"] == 0.5
    assert validate_config({}).training.loss_weights["checkerboard"] == 0.0
