"""LPIPS (Zhang et al. 2018), optional: needs the `lpips` package and its backbone's ImageNet weights.

Neither ships with torch_sr; without them `calculate_lpips` raises a `TorchSRError` that says what to
install or which weights file to place where. Lower is better; inputs are quantised to uint8 first,
like the other metrics, and grayscale images count as three equal channels.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import torch

from torch_sr.errors import TorchSRError
from torch_sr.metrics.inputs import as_uint8_hwc, check_crop_border

BACKBONE_FILES = {  # what the lpips package asks torchvision for on first use
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a75d6d.pth",
}


@functools.lru_cache(maxsize=4)
def lpips_model(net: str = "alex", device: str = "cpu") -> Any:
    """The `lpips.LPIPS` network (built once per net and device), or a clear error saying what is missing."""
    if net not in BACKBONE_FILES:
        raise TorchSRError(f"LPIPS network {net!r} is not one of {', '.join(BACKBONE_FILES)}")
    try:
        import lpips
    except ImportError:
        raise TorchSRError(
            "LPIPS needs the optional package 'lpips', which is not installed: pip install lpips "
            "(or pip install 'torch_sr[lpips]')"
        ) from None
    try:
        model = lpips.LPIPS(net=net, verbose=False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError: offline and the backbone is not cached
        hub = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise TorchSRError(
            f"LPIPS could not load its {net} backbone ({e}); it downloads torchvision's ImageNet weights on first "
            f"use: place {BACKBONE_FILES[net]} in {hub} when offline"
        ) from None
    return model.eval().to(device)


def _to_lpips_input(img: np.ndarray | torch.Tensor, what: str, crop_border: int) -> torch.Tensor:
    arr = as_uint8_hwc(img, what)
    check_crop_border(arr.shape, crop_border)
    if crop_border:
        arr = arr[crop_border:-crop_border, crop_border:-crop_border]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float() / 127.5 - 1
    return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t


def calculate_lpips(
    img: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor, crop_border: int = 0, net: str = "alex"
) -> float:
    """LPIPS distance of `img` to `ref` (same inputs as `calculate_psnr`), on RGB in [-1, 1]."""
    model = lpips_model(net)
    a, b = _to_lpips_input(img, "image", crop_border), _to_lpips_input(ref, "reference", crop_border)
    if a.shape != b.shape:
        raise TorchSRError(f"image and reference differ in size: {tuple(a.shape[-2:])} vs {tuple(b.shape[-2:])}")
    with torch.no_grad():
        return float(model(a, b).mean())
