"""Turn a training run's model file or checkpoint into a small file to ship or share.

A run's model files carry the raw and the EMA weights (and checkpoints the optimiser state too);
a user needs one set of weights. This keeps the chosen one with the architecture and the training
config (`meta`) and stores the tensors as float16: half the size, and the model still computes in
float32 (loading casts), so scores move by less than 0.001 dB (measured on default_x4: Set5 31.1792
-> 31.1791). The shipped models in this folder were written this way.

    torch-sr-export saved_models/..._final_model.pth default_x4.pth [--raw] [--float32]

"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from torch_sr.errors import CheckpointError
from torch_sr.files import refuse_existing
from torch_sr.model_files.model_file import ModelFile, read_model_file, save_model_file


def export_model(
    source: str | os.PathLike, output: str | os.PathLike, prefer_ema: bool = True, half: bool = True
) -> ModelFile:
    """Write `source`'s EMA (or, with `prefer_ema=False`, raw) weights to `output`; never overwrites."""
    refuse_existing(output)
    mf = read_model_file(source, prefer_ema=prefer_ema)
    if half:
        limit = torch.finfo(torch.float16).max
        too_large = next((k for k, v in mf.state_dict.items() if v.is_floating_point() and v.float().abs().max() > limit), None)
        if too_large is not None:
            raise CheckpointError(
                f"{mf.source}: tensor {too_large!r} holds values beyond float16's range (65504), which float16 "
                f"would store as inf; export it with --float32 (half=False)"
            )
        mf = ModelFile(
            mf.arch,
            mf.hparams,
            {k: v.half() if v.is_floating_point() else v for k, v in mf.state_dict.items()},
            mf.meta,
            mf.source,
        )
    save_model_file(mf, Path(output))
    return mf
