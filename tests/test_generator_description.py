"""The one description of a generator (`torch_sr.archs.description`): every registered architecture
says its scale, channels and size multiple truthfully in `info`, recognises its own state dicts and no
other's, and the callers (Upscaler, ONNX export, model files) read nothing else."""
import dataclasses
import re
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import torch_sr
from torch_sr.archs.description import GeneratorArch, GeneratorInfo, generator_info
from torch_sr.archs.registry import GENERATORS, build_generator, generator_arch
from torch_sr.errors import TorchSRError
from torch_sr.inference.upscaler import Upscaler
from torch_sr.model_files.model_file import describe_state_dict

# Every registered generator, small, with non-default scales and channels where it has them.
SMALL = {
    "rrdbnet": dict(scale_factor=2, img_channels=1, rrdb_channels=16, growth_channels=8, num_basic_blocks=1, pixel_unshuffle=2),
    "srcnn": dict(scale_factor=3, img_channels=1, num_filters=(16, 8)),
    "srresnet": dict(scale_factor=2, img_channels=1, num_channels=16, num_blocks=2),
    "resnet_pixelshuffle": dict(scale_factor=4, num_channels=16, num_blocks=2),
    "unet_resnet18": dict(scale_factor=2, decoder_channels=(32, 16, 16, 8, 8), pretrained_encoder=False),
    "srvgg": dict(scale_factor=4, img_channels=1, num_feat=16, num_conv=3),
}
# Upscale their input before any weight sees it: one state dict serves every scale, read as the default.
SCALE_FREE = {"srcnn", "unet_resnet18"}


def test_every_registered_generator_is_covered():
    assert set(SMALL) == set(GENERATORS)
    assert all(name == arch.name for name, arch in GENERATORS.items())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_info_describes_what_the_network_computes(name):
    model = build_generator(name, **SMALL[name]).eval()
    info = generator_info(model)
    assert info.scale == SMALL[name]["scale_factor"]
    assert info.in_channels == SMALL[name].get("img_channels", 3)
    h, w = 6 * info.size_multiple, 4 * info.size_multiple
    with torch.no_grad():
        out = model(torch.rand(2, info.in_channels, h, w))
    assert out.shape == (2, info.out_channels, h * info.scale, w * info.scale)
    assert generator_arch(model).name == name and generator_arch(nn.DataParallel(model)).name == name
    assert generator_info(nn.DataParallel(model)) is info


def test_rrdbnet_folded_input_needs_its_multiple():
    assert build_generator("rrdbnet", **SMALL["rrdbnet"]).info.size_multiple == 2


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_state_dict_reader_knows_its_own_and_no_other(name):
    sd = build_generator(name, **SMALL[name]).state_dict()
    readers = {other: arch.read_state_dict(sd) for other, arch in GENERATORS.items()}
    assert [other for other, found in readers.items() if found is not None] == [name]
    hparams, canonical = readers[name]
    rebuilt, original = build_generator(name, **hparams).info, build_generator(name, **SMALL[name]).info
    if name in SCALE_FREE:
        rebuilt = dataclasses.replace(rebuilt, scale=original.scale)
    assert rebuilt == original
    assert canonical.keys() == sd.keys()
    assert describe_state_dict(sd).arch == name


def test_rrdbnet_reader_renames_the_published_layouts():
    sd = build_generator("rrdbnet", scale_factor=4, rrdb_channels=8, growth_channels=4, num_basic_blocks=2).state_dict()
    renames = (("conv_body", "trunk_conv"), ("body.", "RRDB_trunk."), (".rdb", ".RDB"), ("conv_up", "upconv"), ("conv_hr", "HRconv"))
    esrgan = {}
    for key, value in sd.items():
        for ours, theirs in renames:
            key = key.replace(ours, theirs)
        esrgan[key] = value
    hparams, canonical = GENERATORS["rrdbnet"].read_state_dict(esrgan)
    assert canonical.keys() == sd.keys() and hparams["num_basic_blocks"] == 2 and hparams["scale_factor"] == 4


class HalfShy(nn.Module):
    """A custom generator that declares it cannot compute in float16."""

    def __init__(self):
        super().__init__()
        self.info = GeneratorInfo(scale=2, in_channels=3, out_channels=3, supports_half=False)
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        self.seen.append(x.dtype)
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)


def test_upscaler_keeps_a_half_shy_model_in_float32():
    model = HalfShy()
    with pytest.warns(UserWarning, match="does not support float16; running in float32"):
        up = Upscaler(model, "cpu", precision="fp16", force_autocast=True, tile=None)
    assert up.autocast_dtype is None
    up.upscale_tensor(torch.rand(1, 3, 4, 4))
    assert model.seen and set(model.seen) == {torch.float32}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bf16 is allowed: no warning
        assert Upscaler(model, "cpu", precision="bf16", force_autocast=True).autocast_dtype == torch.bfloat16


def test_onnx_fp16_export_refuses_a_half_shy_model(tmp_path):
    pytest.importorskip("onnx")
    from torch_sr.deploy.onnx import export_onnx

    with pytest.raises(TorchSRError, match="HalfShy does not support float16"):
        export_onnx(HalfShy(), tmp_path / "m.onnx", fp16=True)
    assert not (tmp_path / "m.onnx").exists()


def test_a_module_without_info_is_told_what_to_set():
    with pytest.raises(TypeError, match=r"no `info` \(set `self.info = torch_sr.GeneratorInfo"):
        generator_info(nn.Conv2d(3, 3, 1))
    with pytest.raises(TorchSRError, match="Conv2d is not a torch_sr generator"):
        Upscaler(nn.Conv2d(3, 3, 1), "cpu")
    assert torch_sr.GeneratorInfo is GeneratorInfo


def test_a_registered_arch_without_a_reader_is_never_detected(monkeypatch):
    monkeypatch.setitem(GENERATORS, "halfshy", GeneratorArch("halfshy", HalfShy))
    assert GENERATORS["halfshy"].read_state_dict({"w": torch.zeros(1)}) is None
    assert generator_arch(HalfShy()).name == "halfshy"


def test_the_library_reads_generators_only_through_their_description():
    """No caller guesses a generator's shape from attributes with `getattr` defaults."""
    guess = re.compile(r"getattr\([^)]*[\"'](scale|in_channels|out_channels|size_multiple|arch_name)[\"']")
    root = Path(torch_sr.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if guess.search(line)
    ]
    assert offenders == []
