"""Files torch_sr writes load in the tools people deploy with.

spandrel (chaiNNer, ComfyUI) and BasicSR/Real-ESRGAN read a plain state dict (`params_ema` in
their own files; spandrel unwraps `state_dict` too) and build their own architecture from the key
names. Ours must therefore be their key layout: each file's state dict loads *strictly* into the
published RRDBNet and SRVGGNetCompact (tests/reference_archs.py) and computes the same image.
"""
import pytest
import torch

from reference_archs import BasicSRRRDBNet, SRVGGNetCompactRef, randomize_
from torch_sr.archs.rrdbnet import RRDBNet
from torch_sr.archs.srvgg import SRVGGNetCompact
from torch_sr.model_files.model_file import save_model
from torch_sr.cli.export import main as export_main
from torch_sr.weights import MODELS, model_path

X = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
UNWRAP = ("state_dict", "params_ema", "params-ema", "params", "model", "net")  # spandrel's order


def plain_state_dict(path) -> dict[str, torch.Tensor]:
    """What a spandrel-style loader takes from a file: safe loading, then the first known wrapper key."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return next((obj[k] for k in UNWRAP if isinstance(obj.get(k), dict)), obj)


def same_image(theirs: torch.nn.Module, ours: torch.nn.Module, atol: float = 1e-5) -> None:
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(X), ours.eval()(X), rtol=0, atol=atol)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("scale", [4, 2])
def test_rrdbnet_files_load_strictly_in_basicsr_rrdbnet(tmp_path, suffix, scale):
    ours = randomize_(RRDBNet(scale, 3, 16, 32, 2, pixel_unshuffle=4 // scale), std=0.03)  # Real-ESRGAN's x2 folds
    save_model(ours, tmp_path / f"m{suffix}")
    theirs = BasicSRRRDBNet(3, 3, scale, num_feat=16, num_block=2, num_grow_ch=32)
    theirs.load_state_dict(plain_state_dict(tmp_path / f"m{suffix}"), strict=True)
    same_image(theirs, ours)


def test_srvgg_files_and_exported_float16_files_load_strictly_in_real_esrgan_srvgg(tmp_path):
    ours = randomize_(SRVGGNetCompact(4, 3, 16, 3), std=0.05)
    save_model(ours, tmp_path / "run.pth")
    assert export_main([str(tmp_path / "run.pth"), str(tmp_path / "small.pth")]) == 0  # float16, as shipped
    for name, atol in (("run.pth", 1e-5), ("small.pth", 2e-3)):
        theirs = SRVGGNetCompactRef(num_feat=16, num_conv=3, upscale=4)
        theirs.load_state_dict(plain_state_dict(tmp_path / name), strict=True)
        same_image(theirs.float(), ours, atol)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_shipped_models_load_strictly_in_real_esrgan_srvgg(name):
    from torch_sr.model_files.model_file import load_model

    ours = load_model(model_path(name))
    hp = ours.hparams
    theirs = SRVGGNetCompactRef(num_feat=hp["num_feat"], num_conv=hp["num_conv"], upscale=hp["scale_factor"])
    theirs.load_state_dict(plain_state_dict(model_path(name)), strict=True)
    same_image(theirs.float(), ours)


def test_spandrel_reads_our_files(tmp_path):
    """With spandrel installed (what chaiNNer and ComfyUI load models with), our files are recognised as such."""
    spandrel = pytest.importorskip("spandrel")
    ours = randomize_(RRDBNet(2, 3, 16, 32, 2, pixel_unshuffle=2), std=0.03)
    save_model(ours, tmp_path / "rrdb.pth")
    for path, arch in ((tmp_path / "rrdb.pth", "ESRGAN"), (model_path("default_x4"), "RealESRGAN Compact")):
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
        assert descriptor.architecture.name == arch
    same_image(spandrel.ModelLoader().load_from_file(str(tmp_path / "rrdb.pth")).model, ours)
