"""Export a generator to ONNX, for ONNX Runtime, TensorRT, OpenVINO and ncnn (through pnnx).

The file takes `input` (N, C, H, W) float RGB (or grey) in [0, 1], any N, H and W (H and W
multiples of `size_multiple`), and gives `output` (N, C, H*s, W*s), not clamped. It is written
with opset `OPSET` (17, of 2022: current ONNX Runtime, TensorRT and OpenVINO releases read it;
only ONNX Runtime is tested here) through torch's TorchScript-based exporter (`dynamo=False`),
which needs nothing beyond the `onnx` package (`dynamo=True` also needs onnxscript) and traces
every registered generator with dynamic sizes. RRDBNet exports its plain layers, not its Winograd
CPU path. The model's metadata (`metadata_props`) records the scale, channels, size multiple,
architecture and hyper-parameters, so that a runtime can size its output without knowing
torch_sr. `fp16=True` writes float16 weights, input and output (for GPU runtimes).

Needs `pip install onnx` (or `torch_sr[onnx]`, which adds `onnxruntime` to run the file).
"""
from __future__ import annotations

import copy
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torch_sr import __version__
from torch_sr.archs.description import generator_info
from torch_sr.archs.registry import generator_arch
from torch_sr.files import atomic_write, refuse_existing
from torch_sr.deploy import OPSET, OPSETS
from torch_sr.errors import TorchSRError

INPUT_NAME, OUTPUT_NAME = "input", "output"
# LR side of the traced example (sizes stay dynamic). Odd, so that branches on the size (padding to a
# multiple, as unet_resnet18 does) take their general path when traced; small, as CPU float16 is slow.
EXAMPLE_SIDE = 17


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise TorchSRError("ONNX export needs the onnx package: pip install onnx (or torch_sr[onnx])") from None
    return onnx


def onnx_metadata(model: nn.Module, fp16: bool = False) -> dict[str, str]:
    """What an exported file records about `model` (all values are strings, as ONNX stores them)."""
    info = generator_info(model)
    try:
        arch = generator_arch(model).name
    except ValueError:  # a custom generator
        arch = type(model).__name__
    return {
        "torch_sr_version": __version__,
        "arch": arch,
        "hparams": json.dumps(getattr(model, "hparams", {}), sort_keys=True),
        "scale": str(info.scale),
        "in_channels": str(info.in_channels),
        "out_channels": str(info.out_channels),
        "size_multiple": str(info.size_multiple),
        "precision": "float16" if fp16 else "float32",
        "input_range": "0-1",
    }


def export_onnx(
    model: nn.Module | str | os.PathLike, output: str | os.PathLike, *, fp16: bool = False, opset: int = OPSET
) -> Path:
    """Write `model` (a generator, a model file or a shipped model's name) to `output` as ONNX.

    Never overwrites `output`; returns its path. See the module doc for what the file holds.
    """
    onnx = _import_onnx()
    if opset not in OPSETS:
        raise TorchSRError(f"opset {opset}: choose one from {OPSETS.start} to {OPSETS.stop - 1} (default {OPSET})")
    refuse_existing(output)
    if not isinstance(model, nn.Module):
        from torch_sr.model_files.model_file import load_model
        from torch_sr.weights import resolve_model

        model = load_model(resolve_model(model))
    try:
        info = generator_info(model)
    except TypeError as e:
        raise TorchSRError(str(e)) from None
    if fp16 and not info.supports_half:
        raise TorchSRError(f"{type(model).__name__} does not support float16: export it without fp16")
    net = copy.deepcopy(model).cpu().eval()  # the caller's model keeps its device, dtype and fast path
    if hasattr(net, "optimize_for_inference"):
        net.optimize_for_inference(False)  # RRDBNet: the plain layers, not the Winograd CPU path
    dtype = torch.float16 if fp16 else torch.float32
    net = net.to(dtype)
    side = -(-EXAMPLE_SIDE // info.size_multiple) * info.size_multiple
    example = torch.rand(1, info.in_channels, side, side, dtype=dtype)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice and tracer remarks on shapes
        try:
            torch.onnx.export(
                net,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"},
                },
            )
        except torch.onnx.OnnxExporterError as e:
            raise TorchSRError(f"{type(model).__name__} cannot be exported with opset {opset}: {e}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in onnx_metadata(model, fp16).items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "torch_sr", __version__
    s = info.scale
    proto.doc_string = f"x{s} super-resolution: input (N, C, H, W) in [0, 1] -> output (N, C, {s}H, {s}W), not clamped"
    onnx.checker.check_model(proto)
    return atomic_write(output, lambda f: f.write(proto.SerializeToString()))

