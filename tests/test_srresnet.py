"""SRResNet: the published x4 network, its BN-free variant, every scale, checkpoints, training."""
import pytest
import torch
from torch import nn
from training_steps import assert_trains

from torch_sr.archs.registry import build_generator
from torch_sr.archs.srresnet import SRResNet
from torch_sr.model_files.model_file import load_model, save_model

SMALL = dict(num_channels=8, num_blocks=2)
X = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))


def _count(model: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def _with_running_stats(model: nn.Module) -> nn.Module:
    """One train-mode forward so batch-norm statistics differ from their initial values."""
    model.train()
    with torch.no_grad():
        model(torch.rand(4, model.info.in_channels, 8, 8, generator=torch.Generator().manual_seed(5)))
    return model.eval()


def test_default_is_the_published_x4_network():
    model = SRResNet()
    n = sum(p.numel() for p in model.parameters())
    assert n == 1_547_350 and round(n / 1e6, 2) == 1.55
    assert len(model.body) == 16 and len(model.upsample) == 2
    assert model.conv_first.kernel_size == model.conv_last.kernel_size == (9, 9)
    assert _count(model, nn.BatchNorm2d) == 2 * 16 + 1
    assert _count(model, nn.PReLU) == 1 + 16 + 2
    assert model.upsample[0].conv.out_channels == 4 * 64


def test_without_batch_norm():
    model = SRResNet(use_batch_norm=False, **SMALL)
    assert _count(model, nn.BatchNorm2d) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_every_scale(scale):
    model = SRResNet(scale_factor=scale, img_channels=1, **SMALL)
    assert len(model.upsample) == scale.bit_length() - 1
    assert model(X[:, :1]).shape == (2, 1, 6 * scale, 5 * scale)


@pytest.mark.parametrize("scale", [0, 3, 6])
def test_scale_must_be_a_power_of_two(scale):
    with pytest.raises(ValueError, match="power of two"):
        SRResNet(scale_factor=scale)


@pytest.mark.parametrize("use_batch_norm", [True, False])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip(tmp_path, use_batch_norm, suffix):
    model = _with_running_stats(build_generator("srresnet", scale_factor=2, use_batch_norm=use_batch_norm, **SMALL))
    loaded = load_model(save_model(model, tmp_path / f"srresnet{suffix}"))
    assert isinstance(loaded, SRResNet) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


@pytest.mark.parametrize("use_batch_norm", [True, False])
def test_bare_state_dict_is_recognised(tmp_path, use_batch_norm):
    model = _with_running_stats(SRResNet(scale_factor=8, img_channels=1, use_batch_norm=use_batch_norm, **SMALL))
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth")
    assert isinstance(loaded, SRResNet) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X[:, :1]), model(X[:, :1]), rtol=0, atol=0)


@pytest.mark.parametrize("use_batch_norm", [True, False])
def test_trains(use_batch_norm):
    torch.manual_seed(0)
    model = SRResNet(scale_factor=2, use_batch_norm=use_batch_norm, **SMALL)
    hr = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    assert_trains(lambda: nn.functional.mse_loss(model(X), hr), model)
