"""`torch-sr-export MODEL [OUTPUT] [--onnx FILE]`: a model file to ship and/or an ONNX file to deploy.

OUTPUT gets one set of weights (EMA by default) stored as float16, with the architecture and the
training config: the form the shipped models have (`torch_sr.model_files.export`). `--onnx` writes
the generator for ONNX Runtime, TensorRT, OpenVINO or ncnn (`torch_sr.deploy.onnx`).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from torch_sr.cli.common import ArgumentParser, EXIT_ERROR, EXIT_OK, HelpFormatter, exit_status_epilog, reports_errors
from torch_sr.deploy import OPSET, OPSETS
from torch_sr.errors import TorchSRError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="torch-sr-export",
        description="Export a model file or training checkpoint: as a small float16 model file to ship or share "
        "(OUTPUT), and/or as an ONNX file for ONNX Runtime, TensorRT, OpenVINO or ncnn (--onnx). See "
        "docs/deployment.md.",
        formatter_class=HelpFormatter,
        epilog=exit_status_epilog(
            {EXIT_OK: "every file asked for was written", EXIT_ERROR: "an error (one line on stderr)"}
        ),
    )
    p.add_argument("model", help="a model file, a training checkpoint or a shipped model's name (default_x4, ...)")
    p.add_argument(
        "output",
        nargs="?",
        help="write one set of weights here as a model file: .pth, or .safetensors by suffix (must not exist)",
    )
    p.add_argument(
        "--onnx",
        metavar="FILE",
        help="write an ONNX file (must not exist): input (N, C, H, W) in [0, 1] of any size, scale and channels "
        "in its metadata",
    )
    p.add_argument("--raw", action="store_true", help="the raw weights, not the EMA copy")
    p.add_argument("--float32", action="store_true", help="OUTPUT keeps float32 tensors (twice the size)")
    p.add_argument("--fp16", action="store_true", help="the ONNX file computes in float16 (for GPU runtimes)")
    p.add_argument(
        "--opset",
        type=int,
        default=OPSET,
        choices=OPSETS,
        metavar="N",
        help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} (default: %(default)s, which current ONNX Runtime, "
        "TensorRT and OpenVINO releases read)",
    )
    return p


@reports_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output is None and args.onnx is None:
        parser.error("give OUTPUT (a model file), --onnx FILE, or both")
    if args.fp16 and args.onnx is None:
        parser.error("--fp16 is the precision of the ONNX file: give --onnx FILE (OUTPUT is float16 already)")
    import torch

    from torch_sr.files import refuse_existing
    from torch_sr.model_files.model_file import read_model_file
    from torch_sr.weights import resolve_model
    from torch_sr.model_files.export import export_model

    source = resolve_model(args.model)
    if args.output is not None and args.onnx is not None and Path(args.output).resolve() == Path(args.onnx).resolve():
        raise TorchSRError(f"{args.output}: given as both OUTPUT and --onnx; choose two file names")
    for path in (args.output, args.onnx):
        if path is not None:
            refuse_existing(path)  # before any work, for both files
    if args.output is not None:
        mf = export_model(source, args.output, prefer_ema=not args.raw, half=not args.float32)
        n = sum(v.numel() for v in mf.state_dict.values())
        kind = "raw" if args.raw else "EMA (raw where the file has no EMA)"
        dtype = torch.float32 if args.float32 else torch.float16
        print(f"{args.output}: {mf.arch}, {n / 1e6:.2f} M parameters, {kind} weights as {dtype}")
    if args.onnx is not None:
        from torch_sr.deploy.onnx import export_onnx

        model = read_model_file(source, prefer_ema=not args.raw).build()
        export_onnx(model, args.onnx, fp16=args.fp16, opset=args.opset)
        precision = "float16" if args.fp16 else "float32"
        print(f"{args.onnx}: ONNX opset {args.opset}, {precision}, x{model.info.scale}, dynamic batch, height and width")
    return EXIT_OK
