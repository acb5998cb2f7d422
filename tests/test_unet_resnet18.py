"""The ResNet-18 UNet: residual over bilinear, frozen encoder, ImageNet weights from the hub cache."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from training_steps import assert_trains

from torch_sr.archs.registry import build_generator
from torch_sr.archs.unet_resnet18 import UNetResNet18, hub_resnet18_path
from torch_sr.model_files.model_file import load_model, save_model
from torch_sr.errors import CheckpointError

X = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so no test depends on the machine's."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _random_model(**kwargs) -> UNetResNet18:
    torch.manual_seed(0)
    model = UNetResNet18(pretrained_encoder=False, **kwargs)
    with torch.no_grad():  # a non-zero last conv, so that outputs depend on the whole network
        model.conv_last.weight.normal_(std=0.05)
    return model


def _resnet18_file(path):
    """A torchvision ResNet-18 state dict (random weights) saved as torchvision names it."""
    from torchvision.models import resnet18

    torch.manual_seed(1)
    sd = resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def test_about_a_million_trainable_parameters_and_a_frozen_encoder():
    model = _random_model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0.9e6 <= trainable <= 1.1e6
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert encoder == 11_176_512  # ResNet-18 without its classifier
    assert not any(p.requires_grad for p in model.encoder.parameters())


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_any_size_and_scale(scale):
    model = _random_model(scale_factor=scale)
    assert model(X).shape == (2, 3, 9 * scale, 7 * scale)
    assert model.info.size_multiple == 1


def test_predicts_the_residual_over_bilinear_upscaling():
    model = _random_model(scale_factor=3)
    up = F.interpolate(X, size=(27, 21), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert (model(X) - up).abs().max() > 1e-3
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        torch.testing.assert_close(model(X), up, rtol=0, atol=0)
    fresh = UNetResNet18(scale_factor=3, pretrained_encoder=False)  # starts as bilinear upscaling
    torch.testing.assert_close(fresh(X), up, rtol=0, atol=0)


def test_encoder_sees_imagenet_normalised_input():
    model = _random_model(scale_factor=1).eval()
    seen = []
    model.encoder.conv1.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = torch.rand(1, 3, 32, 32)
    model(x)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(seen[0], (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))


def test_frozen_encoder_gets_no_gradients_and_keeps_its_statistics():
    model = _random_model(scale_factor=2).train()
    assert not any(m.training for m in model.encoder.modules())
    assert all(m.training for m in model.decoder.modules())
    stats = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    F.l1_loss(model(X), torch.rand(2, 3, 18, 14)).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, stats[k]), k


def test_trains():
    model = _random_model(scale_factor=2)
    hr = torch.rand(2, 3, 18, 14, generator=torch.Generator().manual_seed(1))
    assert_trains(lambda: F.l1_loss(model(X), hr), model)  # the frozen encoder is not trained


def test_imagenet_weights_from_the_hub_cache(torch_home):
    path = hub_resnet18_path()
    assert path == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    sd = _resnet18_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_generator("unet_resnet18")
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert model.hparams["pretrained_encoder"] is False  # saved models carry the encoder in their weights


def test_imagenet_weights_from_a_given_path(tmp_path):
    sd = _resnet18_file(tmp_path / "mine.pth")
    model = UNetResNet18(encoder_weights=str(tmp_path / "mine.pth"))
    assert torch.equal(model.encoder.conv1.weight, sd["conv1.weight"])
    assert "encoder_weights" not in model.hparams


def test_random_encoder_with_a_warning_when_weights_are_absent():
    with pytest.warns(UserWarning, match="ResNet-18 weights not found.*randomly initialised"):
        UNetResNet18()


def test_bad_encoder_weights_are_named(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="bad.pth: not a torchvision ResNet-18"):
        UNetResNet18(encoder_weights=str(tmp_path / "bad.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        UNetResNet18(encoder_weights=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="pretrained_encoder is False"):
        UNetResNet18(pretrained_encoder=False, encoder_weights=str(tmp_path / "bad.pth"))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip_needs_no_cache(tmp_path, suffix):
    model = _random_model(scale_factor=3, decoder_channels=(32, 16, 16, 8, 8)).eval()
    path = save_model(model, tmp_path / f"unet{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the empty hub cache must not matter
        loaded = load_model(path)
    assert isinstance(loaded, UNetResNet18) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


def test_bare_state_dict_is_recognised(tmp_path):
    model = _random_model(decoder_channels=(32, 16, 16, 8, 8)).eval()
    torch.save({"model": model.state_dict()}, tmp_path / "bare.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_model(tmp_path / "bare.pth")
    # The scale is not in the weights (the upscaling is bilinear): it stays the default, 4.
    assert loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X), model(X), rtol=0, atol=0)


def test_bad_decoder_channels():
    with pytest.raises(ValueError, match="5 positive counts"):
        UNetResNet18(decoder_channels=(64, 32), pretrained_encoder=False)


@pytest.mark.slow
def test_module_import_is_light():
    import subprocess
    import sys

    code = "import sys, torch_sr.archs.registry; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
