import pytest
import torch

from torch_sr.archs.registry import build_discriminator
from torch_sr.archs.vgg_discriminator import VGGStyleDiscriminator


def test_default_is_the_paper_network():
    d = VGGStyleDiscriminator()
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.features) == 7
    linears = [m for m in d.classifier if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(512 * 8 * 8, 100), (100, 1)]


@pytest.mark.parametrize("size", [(128, 128), (96, 96), (192, 192), (64, 200), (24, 24)])
def test_any_patch_size(size):
    d = VGGStyleDiscriminator(vgg_blk_ch=[8, 8, 16, 16], fc_features=[10])
    assert d(torch.rand(2, 3, *size)).shape == (2, 1)


def test_pooling_is_identity_at_the_built_size():
    d = VGGStyleDiscriminator(vgg_blk_ch=[8, 8, 16, 16], input_size=32).eval()
    x = torch.rand(1, 3, 32, 32)
    feats = d.features(x)
    assert feats.shape[-2:] == (8, 8)
    torch.testing.assert_close(d.pool(feats), feats)


def test_config_table_hyperparameters_and_registry():
    d = build_discriminator("vgg_discriminator", img_channels=1, vgg_blk_ch=[16, 16, 32], fc_features=[50, 20])
    assert d(torch.rand(3, 1, 40, 40)).shape == (3, 1)
    assert d.hparams["fc_features"] == [50, 20]
    with pytest.raises(ValueError, match="unknown discriminator 'nope'"):
        build_discriminator("nope")
