"""Turn a training run's model file or checkpoint into a small file to ship or share.

A run's model files carry the raw and the EMA weights (and checkpoints the optimiser state too);
a user needs one set of weights. This keeps the chosen one with the architecture and the training
config (`meta`) and stores the tensors as float16: half the size, and the model still computes in
float32 (loading casts), so scores move by less than 0.001 dB (measured on default_x4: Set5 31.1792
-> 31.1791). The shipped models in this folder were written this way.

    python -m torch_sr.weights.export saved_models/..._final_model.pth default_x4.pth [--raw] [--float32]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from torch_sr.checkpoint.files import refuse_existing
from torch_sr.checkpoint.model_file import ModelFile, read_model_file, save_model_file
from torch_sr.cli.common import reports_errors


def export_model(
    source: str | os.PathLike, output: str | os.PathLike, prefer_ema: bool = True, half: bool = True
) -> ModelFile:
    """Write `source`'s EMA (or, with `prefer_ema=False`, raw) weights to `output`; never overwrites."""
    refuse_existing(output)
    mf = read_model_file(source, prefer_ema=prefer_ema)
    if half:
        mf = ModelFile(
            mf.arch,
            mf.hparams,
            {k: v.half() if v.is_floating_point() else v for k, v in mf.state_dict.items()},
            mf.meta,
            mf.source,
        )
    save_model_file(mf, Path(output))
    return mf


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torch_sr.weights.export",
        description="Write one set of a model file's weights (EMA by default) as a small float16 model file.",
    )
    parser.add_argument("model", help="a model file or training checkpoint")
    parser.add_argument("output", help="the file to write (.pth, or .safetensors by suffix; must not exist)")
    parser.add_argument("--raw", action="store_true", help="the raw weights, not the EMA copy")
    parser.add_argument("--float32", action="store_true", help="keep float32 tensors (twice the size)")
    args = parser.parse_args(argv)
    mf = export_model(args.model, args.output, prefer_ema=not args.raw, half=not args.float32)
    n = sum(v.numel() for v in mf.state_dict.values())
    kind = "raw" if args.raw else "EMA (raw where the file has no EMA)"
    dtype = torch.float32 if args.float32 else torch.float16
    print(f"{args.output}: {mf.arch}, {n / 1e6:.2f} M parameters, {kind} weights as {dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
