"""RRDBNet computes the published ESRGAN function, in every checkpoint layout."""
import pytest
import torch

from reference_archs import BasicSRRRDBNet, ESRGANNewArch, ESRGANOldArch, randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import describe_state_dict
from torch_sr.state_dicts import load_state_dict_checked


def _load_foreign(ref: torch.nn.Module) -> RRDBNet:
    mf = describe_state_dict(ref.state_dict())
    model = mf.build().eval()
    return model


def test_default_is_the_paper_network():
    model = RRDBNet()
    assert sum(p.numel() for p in model.parameters()) == 16_697_987  # 16.7 M, as published
    ref = ESRGANNewArch()
    mf = describe_state_dict(ref.state_dict())
    assert mf.hparams == model.hparams


@pytest.mark.parametrize("layout", ["a", "b", "c"])
def test_same_output_as_reference_in_each_layout(layout):
    ref = {"a": ESRGANOldArch, "b": ESRGANNewArch, "c": BasicSRRRDBNet}[layout]()
    randomize_(ref, seed=1).eval()
    ours = _load_foreign(ref)
    assert ours.hparams["num_basic_blocks"] == 23 and ours.info.scale == 4
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert got.shape == (1, 3, 48, 40)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2])
def test_basicsr_pixel_unshuffle_models(scale):
    ref = randomize_(BasicSRRRDBNet(scale=scale, num_block=2, num_feat=16, num_grow_ch=8), seed=3).eval()
    ours = _load_foreign(ref)
    assert ours.info.scale == scale and ours.hparams["pixel_unshuffle"] == 4 // scale
    x = torch.rand(2, 3, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale,subpixel", [(2, False), (8, False), (4, True), (1, False)])
def test_old_layout_other_scales_and_pixelshuffle(scale, subpixel):
    ref = randomize_(ESRGANOldArch(nf=16, nb=2, gc=8, upscale=scale, pixelshuffle=subpixel), seed=4).eval()
    ours = _load_foreign(ref)
    assert ours.info.scale == scale and ours.use_subpixel_conv == subpixel
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("subpixel", [False, True])
def test_every_hyperparameter_round_trips_through_inference(scale, subpixel):
    hp = dict(scale_factor=scale, img_channels=1, rrdb_channels=8, growth_channels=4, num_basic_blocks=2,
              num_dense_blocks=2, num_residual_blocks=4, residual_scaling=0.2, use_subpixel_conv=subpixel,
              pixel_unshuffle=1)
    model = RRDBNet(**hp)
    hp["use_subpixel_conv"] = subpixel and scale > 1  # no upsampling step, nothing to record
    assert model.hparams == hp
    assert describe_state_dict(model.state_dict()).hparams == hp
    assert model(torch.rand(1, 1, 5, 6)).shape == (1, 1, 5 * scale, 6 * scale)


def test_initialisation_is_scaled_kaiming_in_blocks():
    torch.manual_seed(0)
    model = RRDBNet(num_basic_blocks=2)
    w = model.body[0].rdb1.conv1.weight
    fan_in = w.shape[1] * 9
    assert w.std().item() == pytest.approx(0.1 * (2 / fan_in) ** 0.5, rel=0.1)
    assert model.body[0].rdb1.conv1.bias.abs().max() == 0


def test_gradients_flow_in_training_mode():
    model = RRDBNet(num_basic_blocks=1, rrdb_channels=8, growth_channels=4)
    out = model(torch.rand(2, 3, 8, 8))
    out.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_invalid_scale_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        RRDBNet(scale_factor=3)


def test_mismatched_weights_explain_themselves():
    model = RRDBNet(num_basic_blocks=2, rrdb_channels=8, growth_channels=4)
    sd = RRDBNet(num_basic_blocks=2, rrdb_channels=16, growth_channels=4).state_dict()
    with pytest.raises(Exception, match=r"other shapes, e\.g\. 'conv_first\.weight'"):
        load_state_dict_checked(model, sd, "x.pth")
