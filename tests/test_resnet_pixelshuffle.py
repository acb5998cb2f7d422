"""ResNet + PixelShuffle: ICNR (no checkerboard at initialisation), weighted residuals, checkpoints."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from training_steps import assert_trains

from torch_sr.archs.init import icnr_
from torch_sr.archs.registry import build_generator
from torch_sr.archs.resnet_pixelshuffle import PixelShuffleStep, ResNetPixelShuffle, WeightedResidualBlock
from torch_sr.model_files.model_file import load_model, save_model

SMALL = dict(num_channels=8, num_blocks=2)
X = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))


def _groups_equal(y: torch.Tensor, r: int) -> bool:
    """Whether every r x r sub-pixel group of `y` holds one value (a nearest-neighbour upscale)."""
    blocks = y.unflatten(-2, (-1, r)).unflatten(-1, (-1, r))  # (..., H/r, r, W/r, r)
    return torch.equal(blocks, blocks[..., :1, :, :1].expand_as(blocks))


@pytest.mark.parametrize("r", [2, 3])
def test_icnr_makes_conv_plus_shuffle_a_nearest_upscale(r):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 6 * r * r, 3, 1, 1)
    feats = torch.randn(2, 5, 7, 6)
    assert not _groups_equal(F.pixel_shuffle(conv(feats), r), r)  # PyTorch's init: a checkerboard
    icnr_(conv, r)
    with torch.no_grad():
        y = F.pixel_shuffle(conv(feats), r)
    assert y.shape == (2, 6, 7 * r, 6 * r) and _groups_equal(y, r)
    assert y.std() > 0.1  # not a trivially constant (e.g. zero) output


def test_icnr_needs_divisible_channels():
    with pytest.raises(ValueError, match="divisible by upscale"):
        icnr_(nn.Conv2d(4, 6, 3), 2)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_every_upsampling_step_starts_without_checkerboard(scale):
    torch.manual_seed(scale)
    model = ResNetPixelShuffle(scale_factor=scale, **SMALL)
    outputs = []
    for step in model.upsample:
        step.register_forward_hook(lambda module, args, out: outputs.append(out))
    with torch.no_grad():
        model(X)
    assert len(outputs) == scale.bit_length() - 1
    for out in outputs:  # each step's output, on the features it gets inside the network
        assert _groups_equal(out, 2) and out.abs().sum() > 0


def test_the_check_fails_without_icnr():
    torch.manual_seed(0)
    step = PixelShuffleStep(8)
    nn.init.kaiming_normal_(step.conv.weight)  # what the step would have without ICNR
    with torch.no_grad():
        assert not _groups_equal(step(torch.randn(1, 8, 5, 5)), 2)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_every_scale(scale):
    model = ResNetPixelShuffle(scale_factor=scale, img_channels=1, **SMALL)
    assert model(X[:, :1]).shape == (2, 1, 6 * scale, 5 * scale)


def test_scale_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        ResNetPixelShuffle(scale_factor=3)


def test_residual_branch_is_weighted():
    x = torch.randn(1, 8, 5, 5)
    block = WeightedResidualBlock(8, 0.0, learnable=False)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    block.res_scale.fill_(0.5)
    branch = block.conv2(block.relu(block.conv1(x)))
    torch.testing.assert_close(block(x), x + 0.5 * branch)


@pytest.mark.parametrize("learnable", [False, True])
def test_fixed_or_learnable_weight(learnable):
    torch.manual_seed(0)
    model = ResNetPixelShuffle(scale_factor=2, res_scale=0.3, learnable_res_scale=learnable, **SMALL)
    names = {n for n, _ in model.named_parameters()}
    assert ("body.0.res_weight" in names) == learnable
    assert ("body.0.res_scale" in model.state_dict()) != learnable
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    F.l1_loss(model(X), torch.rand(2, 3, 12, 10)).backward()
    opt.step()
    weight = model.body[0].res_weight if learnable else model.body[0].res_scale
    assert (weight.item() != pytest.approx(0.3)) == learnable


@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip(tmp_path, learnable, suffix):
    model = build_generator(
        "resnet_pixelshuffle", scale_factor=4, res_scale=0.25, learnable_res_scale=learnable, **SMALL
    )
    loaded = load_model(save_model(model.eval(), tmp_path / f"m{suffix}"))
    assert isinstance(loaded, ResNetPixelShuffle) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


@pytest.mark.parametrize("learnable", [False, True])
def test_bare_state_dict_is_recognised(tmp_path, learnable):
    res_scale = 0.1 if learnable else 0.25  # a learnable weight's initial value is not in the file
    model = ResNetPixelShuffle(
        scale_factor=8, img_channels=1, res_scale=res_scale, learnable_res_scale=learnable, **SMALL
    )
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth")
    assert isinstance(loaded, ResNetPixelShuffle) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X[:, :1]), model.eval()(X[:, :1]), rtol=0, atol=0)


def test_trains():
    torch.manual_seed(0)
    model = ResNetPixelShuffle(scale_factor=2, learnable_res_scale=True, **SMALL)
    hr = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    assert_trains(lambda: F.l1_loss(model(X), hr), model)
