"""VGG features by layer name: torchvision's layers, only as deep as needed, frozen, safe weight loading."""
import pytest
import torch

from torch_sr.archs.vgg_features import VGG_WEIGHT_FILES, VGGFeatures, vgg_layer_names, vgg_weights_file
from torch_sr.errors import CheckpointError


TV_CONFIGS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def tv_features(vgg_type, seed=0):
    """torchvision's own VGG `features` (built without the 120 M-parameter classifier, to stay fast)."""
    from torchvision.models import vgg

    torch.manual_seed(seed)
    return vgg.make_layers(vgg.cfgs[TV_CONFIGS[vgg_type]]).eval()


@pytest.fixture(scope="module")
def tv_vgg19():
    return tv_features("vgg19")


def _imagenet_state_dict(vgg_type):
    """A state dict in torchvision's ImageNet-file layout (`features.*`; the classifier is omitted)."""
    features = tv_features(vgg_type, seed=1)
    return features, {f"features.{k}": v for k, v in features.state_dict().items()}


class _NotATensor:
    pass


@pytest.mark.parametrize("vgg_type", ["vgg11", "vgg13", "vgg16", "vgg19"])
def test_layer_names_follow_torchvision(vgg_type):
    features = tv_features(vgg_type)
    names = vgg_layer_names(vgg_type)
    assert len(names) == len(features)
    for name, module in zip(names, features):
        kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name.rstrip("0123456789_")]
        assert isinstance(module, kind), name
    assert names[-1] == "pool5"


def test_vgg19_layer_indices():
    names = vgg_layer_names("vgg19")
    assert names.index("conv5_4") == 34 and names.index("relu5_4") == 35  # BasicSR/ESRGAN: conv5_4 is features[34]
    assert names.index("relu2_2") == 8 and names.index("conv1_1") == 0 and names.index("pool1") == 4


@pytest.mark.parametrize("layer", ["conv1_2", "relu2_2", "pool2", "conv3_4", "conv5_4", "relu5_4"])
def test_features_equal_torchvision_vgg19_at_the_named_layer(tv_vgg19, layer):
    ours = VGGFeatures([layer], "vgg19", pretrained=False)
    ours.features.load_state_dict(tv_vgg19[: len(ours.features)].state_dict())
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    index = vgg_layer_names("vgg19").index(layer)
    with torch.no_grad():
        expected = tv_vgg19[: index + 1](x)
        got = ours(x)
    assert list(got) == [layer]
    torch.testing.assert_close(got[layer], expected)
    if layer.startswith("conv"):  # before the activation: negative values survive
        assert got[layer].min() < 0


def test_only_builds_up_to_the_deepest_layer_and_returns_all_requested():
    ext = VGGFeatures(["relu2_2", "conv1_1", "relu2_2"], "vgg19", pretrained=False)
    assert len(ext.features) == vgg_layer_names("vgg19").index("relu2_2") + 1 == 9
    out = ext(torch.rand(2, 3, 16, 16))
    assert set(out) == {"relu2_2", "conv1_1"}
    assert out["conv1_1"].shape == (2, 64, 16, 16) and out["relu2_2"].shape == (2, 128, 8, 8)
    assert out["relu2_2"].min() >= 0


def test_frozen_and_always_in_eval_mode():
    ext = VGGFeatures(["conv2_1"], "vgg11", pretrained=False)
    assert not any(p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training and not any(m.training for m in ext.modules())
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    ext(x)["conv2_1"].sum().backward()
    assert x.grad is not None and all(p.grad is None for p in ext.parameters())  # gradients flow to the input only


def test_unknown_layers_are_refused():
    with pytest.raises(ValueError, match=r"unknown vgg11 layer\(s\) \['conv5_4'\]"):
        VGGFeatures(["conv5_4"], "vgg11", pretrained=False)
    with pytest.raises(ValueError, match="unknown VGG type 'vgg12'"):
        VGGFeatures(["conv1_1"], "vgg12", pretrained=False)


def test_weights_load_from_torchvisions_cache_at_torch_home(tmp_path, monkeypatch):
    features, sd = _imagenet_state_dict("vgg11")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = vgg_weights_file("vgg11")
    assert path == tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg11-8a719046.pth"
    path.parent.mkdir(parents=True)
    torch.save(sd, path)
    ext = VGGFeatures(["conv4_2"], "vgg11")
    x = torch.rand(1, 3, 32, 32)
    index = vgg_layer_names("vgg11").index("conv4_2")
    with torch.no_grad():
        torch.testing.assert_close(ext(x)["conv4_2"], features[: index + 1](x))


def test_weights_from_an_explicit_path_and_mismatches(tmp_path):
    _, sd = _imagenet_state_dict("vgg11")
    path = tmp_path / "my_vgg.pth"
    torch.save({"state_dict": sd}, path)  # wrapped files are unwrapped
    ext = VGGFeatures(["relu1_1"], "vgg11", weights_path=path)
    torch.testing.assert_close(ext.features[0].weight, sd["features.0.weight"])
    expected = r"my_vgg.pth \(vgg19\): weights do not fit VGGFeatures.*'features.2.weight'"
    with pytest.raises(CheckpointError, match=expected):
        VGGFeatures(["conv2_2"], "vgg19", weights_path=path)  # vgg11's features.3 is not vgg19's
    with pytest.raises(ValueError, match="pretrained=False"):
        VGGFeatures(["relu1_1"], "vgg11", pretrained=False, weights_path=path)


def test_weights_are_loaded_without_executing_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "hook": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        VGGFeatures(["conv1_1"], "vgg11", weights_path=path)


@pytest.mark.parametrize("vgg_type", list(VGG_WEIGHT_FILES))
def test_missing_weights_say_what_to_place_where(tmp_path, monkeypatch, vgg_type):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as e:
        VGGFeatures(["conv1_1"], vgg_type)
    message, file = str(e.value), VGG_WEIGHT_FILES[vgg_type]
    assert f"place {file} at {tmp_path / 'hub' / 'checkpoints' / file}" in message
    assert f"https://download.pytorch.org/models/{file}" in message
    assert "perceptual_loss/weights_path" in message
