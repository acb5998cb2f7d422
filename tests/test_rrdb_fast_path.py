"""RRDBNet's Winograd inference path: same function as the published code, training path untouched."""
import copy

import pytest
import torch
import torch.nn.functional as F

from reference_archs import BasicSRRRDBNet, ESRGANNewArch, ESRGANOldArch, randomize_
from torch_sr.archs import winograd
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.model_files.model_file import describe_state_dict

SMALL = dict(rrdb_channels=16, growth_channels=8, num_basic_blocks=2)


def _fast(model: torch.nn.Module) -> RRDBNet:
    return describe_state_dict(model.state_dict()).build().eval().optimize_for_inference(True)


def _agree(got: torch.Tensor, ref: torch.Tensor, truth: torch.Tensor) -> None:
    """Within 1e-4 of the output range of the reference, and about as close to float64 as it is."""
    scale = max(1.0, ref.abs().max().item())
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert (got - ref).abs().max().item() <= 1e-4 * scale
    ref_error = (ref.double() - truth).abs().max().item()
    assert (got.double() - truth).abs().max().item() <= 3 * ref_error + 1e-6 * scale


def _float64_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return copy.deepcopy(model).double()(x.double())


@pytest.fixture
def spy(monkeypatch):
    """Counts Winograd input transforms, to prove that the fast path ran."""
    calls = []
    real = winograd.transform_input
    monkeypatch.setattr(winograd, "transform_input", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.slow
def test_default_x4_network_matches_published_code(spy):
    ref = randomize_(ESRGANNewArch(), seed=5).eval()
    ours = _fast(ref)
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        got, expected = ours(x), ref(x)
    assert len(spy) >= 23 * 3 * 5  # each dense-block feature transformed once (then the convs after the trunk)
    _agree(got, expected, _float64_output(ref, x))


def test_off_by_default_and_switchable(spy):
    model = RRDBNet(**SMALL).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        plain = model(x)
        assert not spy
        assert model.optimize_for_inference(True) is model
        fast = model(x)
        assert spy
        spy.clear()
        model.optimize_for_inference(False)
        assert torch.equal(model(x), plain) and not spy
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_auto_choice_is_on_for_wide_networks_only():
    assert RRDBNet(num_basic_blocks=1).optimize_for_inference().fast_inference
    assert not RRDBNet(**SMALL).optimize_for_inference().fast_inference


@pytest.mark.parametrize(
    "hparams,shape",
    [
        (dict(growth_channels=4, num_residual_blocks=4), (1, 3, 9, 7)),
        (dict(num_residual_blocks=2, num_dense_blocks=1), (2, 3, 6, 5)),
        (dict(num_residual_blocks=3, num_dense_blocks=2, residual_scaling=0.5), (3, 3, 5, 11)),
        (dict(use_subpixel_conv=True), (2, 3, 7, 6)),
        (dict(scale_factor=2, pixel_unshuffle=2), (1, 3, 10, 14)),
        (dict(scale_factor=1, pixel_unshuffle=4), (2, 3, 12, 8)),
        (dict(scale_factor=8, img_channels=1), (1, 1, 5, 3)),
        (dict(scale_factor=1), (1, 3, 4, 4)),
        (dict(scale_factor=2, img_channels=4, num_basic_blocks=0), (1, 4, 13, 1)),
    ],
    ids=["growth4-4convs", "2convs-1rdb-batch2", "3convs-scaling0.5-batch3", "subpixel", "unshuffle2", "unshuffle4",
         "x8-gray", "x1", "no-blocks-rgba"],
)
def test_non_default_hyperparameters_match_the_plain_layers(hparams, shape, spy):
    torch.manual_seed(0)
    model = randomize_(RRDBNet(**{**SMALL, **hparams}), seed=6, std=0.1).eval()
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(x)
        fast = model.optimize_for_inference(True)(x)
    assert spy
    _agree(fast, plain, _float64_output(model, x))


@pytest.mark.parametrize(
    "ref",
    [
        lambda: BasicSRRRDBNet(scale=2, num_feat=16, num_block=2, num_grow_ch=8),
        lambda: BasicSRRRDBNet(scale=1, num_feat=16, num_block=2, num_grow_ch=8),
        lambda: ESRGANOldArch(nf=16, nb=2, gc=8, upscale=4, pixelshuffle=True),
        lambda: ESRGANOldArch(nf=16, nb=2, gc=8, upscale=8),
    ],
    ids=["basicsr-x2", "basicsr-x1", "old-subpixel-x4", "old-x8"],
)
def test_published_variants_match(ref):
    ref = randomize_(ref(), seed=7).eval()
    x = torch.rand(2, 3, 12, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = ref(x)
        got = _fast(ref)(x)
    _agree(got, expected, _float64_output(ref, x))


def test_training_gradients_equal_the_reference():
    ref = randomize_(BasicSRRRDBNet(num_feat=16, num_block=2, num_grow_ch=8), seed=8)
    ours = describe_state_dict(ref.state_dict()).build().train().optimize_for_inference(True)
    x = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(3))
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    target = torch.rand(2, 3, 28, 36, generator=torch.Generator().manual_seed(4))
    for model, xi in zip((ref, ours), xs):
        F.l1_loss(model(xi), target).backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-4, atol=1e-7)
    grads = {n: p.grad for n, p in ref.named_parameters()}
    assert {n for n, _ in ours.named_parameters()} == set(grads)  # BasicSR layout: same names
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-7, msg=name)


def test_weights_changed_after_a_fast_call_are_used():
    model = randomize_(RRDBNet(**SMALL), seed=9).optimize_for_inference(True)
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        before = model(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()  # grad enabled: the plain path
    opt.step()
    with torch.no_grad():
        after = model(x)
        model.optimize_for_inference(False)
        plain_after = model(x)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, plain_after, rtol=1e-4, atol=1e-5)


def _bf16_conv_supported() -> bool:
    try:
        F.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.bfloat16), torch.ones(1, 1, 3, 3, dtype=torch.bfloat16))
    except RuntimeError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _bf16_conv_supported(), reason="this CPU build has no bfloat16 convolution")
@pytest.mark.parametrize("mode", ["bf16-weights", "autocast"])
def test_bf16_on_cpu_is_finite_and_close_to_fp32(mode):
    torch.manual_seed(0)
    model = RRDBNet(num_basic_blocks=2).eval().optimize_for_inference(True)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        fp32 = model(x)
        if mode == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)
        else:
            low = copy.deepcopy(model).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    low = low.float()
    assert torch.isfinite(low).all()
    assert low.std() > 0.5 * fp32.std() > 0  # not black or flat
    assert (low - fp32).abs().mean() < 0.02 * fp32.abs().mean() + 1e-3


@pytest.mark.parametrize("shape", [(1, 5, 9, 13), (2, 3, 4, 4), (1, 2, 1, 7)])
def test_winograd_conv3x3_is_conv2d(shape, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_ELEMENTS", 36 * 5 * 2 * 2)  # force several bands, the last one short
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(*shape, generator=gen)
    w = torch.randn(7, shape[1], 3, 3, generator=gen)
    b = torch.randn(7, generator=gen)
    src, grid = winograd.pad_into_grid(x)
    dst = grid.new_padded(7, x)
    winograd.conv3x3(src, grid, w, b, dst, winograd.Scratch(x), negative_slope=0.1)
    expected = F.leaky_relu(F.conv2d(x.double(), w.double(), b.double(), padding=1), 0.1)
    torch.testing.assert_close(grid.inner(dst).double(), expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    outside = dst.clone()
    grid.inner(outside).zero_()
    assert not outside.any()  # border and overhang stay zero: they are the next conv's padding


def test_upscaler_switches_the_fast_path_on_for_the_paper_network():
    from torch_sr.inference.upscaler import Upscaler

    assert Upscaler(RRDBNet(num_basic_blocks=1), device="cpu").model.fast_inference
    assert not Upscaler(RRDBNet(**SMALL), device="cpu").model.fast_inference
