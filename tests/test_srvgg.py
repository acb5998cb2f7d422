"""SRVGGNetCompact: Real-ESRGAN's compact generator, its checkpoints, and our own files."""
import pytest
import torch

from reference_archs import SRVGGNetCompactRef, randomize_
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files.model_file import load_model, save_model


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_real_esrgan_checkpoints_load_and_compute_the_same(tmp_path, scale):
    ref = randomize_(SRVGGNetCompactRef(num_feat=8, num_conv=3, upscale=scale), seed=scale).eval()
    torch.save({"params": ref.state_dict()}, tmp_path / "realesr-general.pth")
    ours = load_model(tmp_path / "realesr-general.pth")
    assert ours.hparams == dict(scale_factor=scale, img_channels=3, num_feat=8, num_conv=3, act_type="prelu")
    x = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_default_is_real_esrgan_general_v3_size():
    # realesr-general-x4v3: 64 features, 32 convs; the animevideo v3 model: 16 convs
    ref = SRVGGNetCompactRef(num_conv=32)
    ours = SRVGGNetCompact(num_conv=32)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
def test_own_files_keep_the_activation(tmp_path, act_type):
    model = randomize_(SRVGGNetCompact(scale_factor=2, img_channels=1, num_feat=4, num_conv=2, act_type=act_type))
    loaded = load_model(save_model(model, tmp_path / "m.safetensors"))
    assert loaded.hparams == model.hparams
    x = torch.rand(1, 1, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_untrained_output_is_near_the_nearest_upscale():
    model = SRVGGNetCompact(num_feat=4, num_conv=1)
    torch.nn.init.zeros_(model.body[-1].weight)
    torch.nn.init.zeros_(model.body[-1].bias)
    x = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(model(x), x.repeat_interleave(4, 2).repeat_interleave(4, 3))


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="act_type"):
        SRVGGNetCompact(act_type="gelu")
    with pytest.raises(ValueError, match="scale_factor"):
        SRVGGNetCompact(scale_factor=0)
