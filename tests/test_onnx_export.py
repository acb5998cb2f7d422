"""ONNX export (`torch_sr.deploy.onnx`, `torch-sr-export --onnx`): every registered generator, run by ONNX Runtime,
computes what PyTorch computes, at any input size, and says its scale and channels in its metadata."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from reference_archs import randomize_
from torch_sr.archs.registry import GENERATORS, build_generator
from torch_sr.model_files.model_file import save_model
from torch_sr.cli.export import main
from torch_sr.deploy import OPSET
from torch_sr.errors import TorchSRError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from torch_sr.deploy.onnx import export_onnx  # noqa: E402 (after the skip: it needs onnx)

# Every registered generator, small (the RRDBNet x2 folds its input: sizes must be even).
SMALL = {
    "rrdbnet": dict(scale_factor=2, rrdb_channels=16, growth_channels=8, num_basic_blocks=1, pixel_unshuffle=2),
    "srcnn": dict(scale_factor=3, num_filters=(16, 8)),
    "srresnet": dict(scale_factor=2, num_channels=16, num_blocks=2),
    "resnet_pixelshuffle": dict(scale_factor=4, num_channels=16, num_blocks=2, learnable_res_scale=True),
    "unet_resnet18": dict(scale_factor=2, decoder_channels=(32, 16, 16, 8, 8), pretrained_encoder=False),
    "srvgg": dict(scale_factor=4, num_feat=16, num_conv=3),
}
SIZES = ((1, 12, 16), (2, 20, 8))  # (batch, height, width): neither is the traced example's


def run_onnx(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def test_every_registered_generator_is_covered():
    assert set(SMALL) == set(GENERATORS)


@pytest.mark.parametrize("arch", sorted(SMALL))
def test_onnx_runtime_agrees_with_pytorch_at_two_sizes(arch, tmp_path):
    model = randomize_(build_generator(arch, **SMALL[arch]), std=0.05).eval()
    path = export_onnx(model, tmp_path / f"{arch}.onnx")
    gen = torch.Generator().manual_seed(1)
    for n, h, w in SIZES:
        x = torch.rand(n, model.info.in_channels, h, w, generator=gen)
        with torch.no_grad():
            want = model(x).numpy()
        got = run_onnx(path, x)
        assert got.shape == want.shape == (n, model.info.out_channels, h * model.info.scale, w * model.info.scale)
        assert want.std() > 0.02 and np.abs(got - want).max() < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["arch"] == arch and json.loads(meta["hparams"]) == model.hparams
    assert (meta["scale"], meta["in_channels"], meta["out_channels"]) == (str(model.info.scale), "3", "3")
    assert meta["size_multiple"] == str(model.info.size_multiple) and meta["precision"] == "float32"
    assert onnx.load(str(path)).opset_import[0].version == OPSET


def test_rrdbnet_exports_its_plain_layers_not_the_winograd_cpu_path(tmp_path):
    model = randomize_(build_generator("rrdbnet", **SMALL["rrdbnet"])).eval().optimize_for_inference(True)
    export_onnx(model, tmp_path / "rrdb.onnx")
    graph = onnx.load(str(tmp_path / "rrdb.onnx")).graph
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    assert sum(node.op_type == "Conv" for node in graph.node) == convs  # every conv a Conv node: no Winograd matmuls
    assert model.fast_inference  # the caller's model keeps its fast path


def test_float16_export_for_gpu_runtimes(tmp_path):
    model = randomize_(build_generator("srvgg", **SMALL["srvgg"]), std=0.05).eval()
    export_onnx(model, tmp_path / "half.onnx", fp16=True)
    proto = onnx.load(str(tmp_path / "half.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {p.key: p.value for p in proto.metadata_props}["precision"] == "float16"
    x = torch.rand(1, 3, 12, 16)
    with torch.no_grad():
        want = model(x).numpy()
    got = run_onnx(tmp_path / "half.onnx", x.half()).astype(np.float32)
    assert np.abs(got - want).max() < 1e-2  # float16 rounding
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is untouched


def test_command_exports_a_checkpoint_and_never_overwrites(tmp_path, capsys):
    model = randomize_(build_generator("srvgg", **SMALL["srvgg"]), std=0.05).eval()
    save_model(model, tmp_path / "model.pth")
    assert main([str(tmp_path / "model.pth"), str(tmp_path / "small.pth"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "small.pth: srvgg" in out and f"m.onnx: ONNX opset {OPSET}, float32, x4" in out
    assert main([str(tmp_path / "small.pth"), "--onnx", str(tmp_path / "old.onnx"), "--opset", "13"]) == 0
    assert onnx.load(str(tmp_path / "old.onnx")).opset_import[0].version == 13
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        assert np.abs(run_onnx(tmp_path / "m.onnx", x) - model(x).numpy()).max() < 1e-4
    (tmp_path / "taken.onnx").write_bytes(b"keep")
    assert main([str(tmp_path / "model.pth"), "--onnx", str(tmp_path / "taken.onnx")]) == 2
    assert "taken.onnx exists" in capsys.readouterr().err and (tmp_path / "taken.onnx").read_bytes() == b"keep"
    with pytest.raises(SystemExit):  # nothing to write
        main([str(tmp_path / "model.pth")])
    with pytest.raises(TorchSRError, match="opset 9"):
        export_onnx(model, tmp_path / "older.onnx", opset=9)
