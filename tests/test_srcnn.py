"""SRCNN: the published layer sizes, same-size output on the MATLAB bicubic upscale, checkpoints."""
import pytest
import torch
from training_steps import assert_trains

from torch_sr.archs.registry import build_generator
from torch_sr.archs.srcnn import SRCNN
from torch_sr.model_files.model_file import load_model, save_model
from torch_sr.data.imresize import imresize

X = torch.rand(2, 3, 7, 9, generator=torch.Generator().manual_seed(0))


def _weights(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))


@pytest.mark.parametrize("kernel_sizes,published", [((9, 1, 5), 8_032), ((9, 5, 5), 57_184)])
def test_published_sizes(kernel_sizes, published):
    model = SRCNN(img_channels=1, kernel_sizes=kernel_sizes)  # the paper counts weights only, Y channel
    assert _weights(model) == published
    assert [model.conv1.out_channels, model.conv2.out_channels] == [64, 32]


def test_default_is_the_best_published_x4_network():
    assert SRCNN().hparams == dict(scale_factor=4, img_channels=3, kernel_sizes=[9, 5, 5], num_filters=[64, 32])


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_has_the_hr_size(scale, channels):
    model = SRCNN(scale_factor=scale, img_channels=channels, kernel_sizes=(9, 1, 5), num_filters=(8, 4))
    assert model(X[:, :channels]).shape == (2, channels, 7 * scale, 9 * scale)


def test_works_on_the_matlab_bicubic_upscale():
    # Delta kernels make the three layers an identity up to the ReLUs, which clip the bicubic
    # undershoot: what is left is the upscaling done inside forward.
    model = SRCNN(scale_factor=3, img_channels=1, kernel_sizes=(9, 1, 5))
    with torch.no_grad():
        for conv in (model.conv1, model.conv2, model.conv3):
            conv.weight.zero_()
            conv.bias.zero_()
            k = conv.kernel_size[0] // 2
            conv.weight[0, 0, k, k] = 1
        torch.testing.assert_close(model(X[:, :1]), imresize(X[:, :1], scale=3).clamp(min=0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_load_round_trip(tmp_path, suffix):
    model = build_generator("srcnn", scale_factor=3, img_channels=1, kernel_sizes=[9, 1, 5]).eval()
    loaded = load_model(save_model(model, tmp_path / f"srcnn{suffix}"))
    assert isinstance(loaded, SRCNN) and loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X[:, :1]), model(X[:, :1]), rtol=0, atol=0)


def test_bare_state_dict_is_recognised(tmp_path):
    model = SRCNN(img_channels=1, kernel_sizes=(9, 3, 5), num_filters=(16, 8)).eval()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth")
    # Shapes give everything but the scale, which SRCNN weights do not hold: it stays the default (4).
    assert loaded.hparams == model.hparams
    with torch.no_grad():
        torch.testing.assert_close(loaded(X[:, :1]), model(X[:, :1]), rtol=0, atol=0)


def test_trains():
    torch.manual_seed(0)
    model = SRCNN(scale_factor=2, num_filters=(16, 8))
    lr, hr = X[:, :, :6, :6], torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    assert_trains(lambda: torch.nn.functional.mse_loss(model(lr), hr), model)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_sizes=(9, 5)), "three odd sizes"),
        (dict(kernel_sizes=(9, 4, 5)), "three odd sizes"),
        (dict(num_filters=(64,)), "two positive counts"),
        (dict(scale_factor=0), "positive integer"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SRCNN(**kwargs)
