"""The SRGAN discriminator: the published layers, raw logits, any patch size, training."""
import pytest
import torch
from torch import nn
from training_steps import assert_trains

from torch_sr.archs.registry import build_discriminator
from torch_sr.archs.srgan_discriminator import SRGANDiscriminator


def test_default_is_the_paper_network():
    d = SRGANDiscriminator()
    convs = [m for m in d.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    norms = [type(m) for m in d.features if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    assert norms[:3] == [nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]  # no BN after the first conv
    assert norms.count(nn.BatchNorm2d) == 7
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    layers = list(d.classifier)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(512 * 6 * 6, 1024), (1024, 1)]
    assert isinstance(layers[1], nn.LeakyReLU) and layers[-1] is linears[-1]  # raw logits: no sigmoid


@pytest.mark.parametrize("size", [(96, 96), (128, 128), (64, 80), (24, 24)])
def test_any_patch_size(size):
    d = SRGANDiscriminator(num_channels=8, fc_features=32)
    assert d(torch.rand(2, 3, *size)).shape == (2, 1)


def test_pooling_is_identity_at_the_built_size():
    d = SRGANDiscriminator(num_channels=4, fc_features=8).eval()
    feats = d.features(torch.rand(1, 3, 96, 96))
    assert feats.shape[1:] == (32, 6, 6)
    torch.testing.assert_close(d.pool(feats), feats, rtol=0, atol=0)


def test_registry_and_hyperparameters():
    d = build_discriminator("srgan_discriminator", img_channels=1, num_channels=8, fc_features=16, input_size=48)
    assert d.hparams == dict(img_channels=1, num_channels=8, fc_features=16, input_size=48)
    assert d.classifier[0].in_features == 64 * 3 * 3
    assert d(torch.rand(3, 1, 48, 48)).shape == (3, 1)
    with pytest.raises(ValueError, match="num_channels"):
        SRGANDiscriminator(num_channels=0)


def test_learns_to_tell_two_batches_apart():
    torch.manual_seed(0)
    d = SRGANDiscriminator(num_channels=8, fc_features=16, input_size=32)
    real, fake = torch.rand(4, 3, 32, 32) * 0.5 + 0.5, torch.rand(4, 3, 32, 32) * 0.5
    target = torch.cat([torch.ones(4, 1), torch.zeros(4, 1)])
    assert_trains(lambda: nn.functional.binary_cross_entropy_with_logits(d(torch.cat([real, fake])), target), d)
