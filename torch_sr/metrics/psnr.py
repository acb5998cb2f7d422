"""PSNR as the SR papers report it: on the saved uint8 image, Y channel, `scale` pixels shaved."""
from __future__ import annotations

import math

import numpy as np
import torch

from torch_sr.metrics.inputs import prepare_pair


def calculate_psnr(
    img: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, crop_border: int = 0, y_channel: bool = True
) -> float:
    """PSNR in dB (data range 255) of `img` against `ref`; `inf` when they are identical.

    Inputs: uint8 `HW`/`HWC` arrays or float [0, 1] tensors `CHW`/`1CHW`, first quantised to uint8
    as a saved image would be. `y_channel` scores BT.601 Y (RGB images only; grayscale is scored
    as it is); otherwise the mean squared error runs over all channels.
    """
    a, b = prepare_pair(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
