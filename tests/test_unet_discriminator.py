"""Real-ESRGAN's U-Net discriminator: its key layout, per-pixel logits, spectral norm, training."""
import pytest
import torch
from training_steps import assert_trains

from torch_sr.archs.registry import build_discriminator
from torch_sr.archs.unet_discriminator import UNetDiscriminatorSN
from torch_sr.losses.adversarial import ragan_d_loss


def test_key_layout_and_shapes_are_real_esrgans():
    sd = UNetDiscriminatorSN().state_dict()
    assert list(sd)[:5] == ["conv0.weight", "conv0.bias", "conv1.weight_orig", "conv1.weight_u", "conv1.weight_v"]
    assert sd["conv1.weight_orig"].shape == (128, 64, 4, 4) and sd["conv3.weight_orig"].shape == (512, 256, 4, 4)
    assert sd["conv4.weight_orig"].shape == (256, 512, 3, 3) and sd["conv9.weight"].shape == (1, 64, 3, 3)
    normalised = {k.split(".")[0] for k in sd if k.endswith("weight_orig")}
    assert normalised == {f"conv{i}" for i in range(1, 9)}  # not the first nor the last conv
    assert not any(f"conv{i}.bias" in sd for i in range(1, 9))


@pytest.mark.parametrize("skip", [True, False])
def test_one_logit_per_pixel(skip):
    d = build_discriminator("unet_discriminator", img_channels=1, num_feat=4, skip_connection=skip)
    assert d.hparams == dict(img_channels=1, num_feat=4, skip_connection=skip)
    assert d(torch.rand(2, 1, 32, 48)).shape == (2, 1, 32, 48)


def test_sizes_not_divisible_by_8_are_refused():
    with pytest.raises(ValueError, match=r"divisible by 8, got \(30, 32\)"):
        UNetDiscriminatorSN(num_feat=4)(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="num_feat"):
        UNetDiscriminatorSN(num_feat=0)


def test_spectral_norm_bounds_the_normalised_weights():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(num_feat=8)
    with torch.no_grad():
        d.conv4.weight_orig.mul_(50)  # a large raw weight: the normalised one stays at norm 1
        for _ in range(30):  # each training-mode call runs one power iteration
            d(torch.rand(1, 3, 16, 16))
    sigma = torch.linalg.matrix_norm(d.conv4.weight.flatten(1), ord=2)
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_learns_to_tell_real_from_fake_pixels_with_ragan():
    torch.manual_seed(0)
    d = UNetDiscriminatorSN(num_feat=8)
    real = torch.rand(4, 3, 16, 16) * 0.5 + 0.5
    fake = torch.rand(4, 3, 16, 16) * 0.5
    # A shift of every logit cancels in the relativistic loss, so the last conv's bias gets no gradient:
    # its gradient is the sum of the n per-logit gradients, which cancel exactly. In float32 that sum is
    # off by rounding that depends on the order of the additions (so on the thread count: 1.2e-7 with 2
    # threads, 0 with 1); a sum of n terms is off by at most (n - 1) * eps * sum(|terms|).
    logits = (d(real), d(fake))
    loss = ragan_d_loss(*logits)
    per_logit = torch.autograd.grad(loss, logits, retain_graph=True)
    n = sum(g.numel() for g in per_logit)
    bound = (n - 1) * torch.finfo(torch.float32).eps * sum(float(g.abs().sum()) for g in per_logit)
    loss.backward()
    assert float(d.conv9.bias.grad.abs().sum()) <= bound
    d.zero_grad()
    assert_trains(lambda: ragan_d_loss(d(real), d(fake)), d, steps=10, below=0.9, no_gradient={"conv9.bias"})
