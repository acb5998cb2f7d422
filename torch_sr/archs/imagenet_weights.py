"""torchvision's ImageNet weight files for the frozen backbones (VGG, ResNet-18): where they are looked up.

Training never downloads them: they are read from torchvision's hub cache
(`$TORCH_HOME/hub/checkpoints/`, where `torchvision.models.<name>(weights=...)` leaves them) or
from a path the user gives, and a missing file is an error that says which file to place where.
"""
from __future__ import annotations

from pathlib import Path

import torch

from torch_sr.errors import CheckpointError

WEIGHTS_URL = "https://download.pytorch.org/models/"


def hub_weights_path(file: str) -> Path:
    """Where torchvision keeps (and we look for) an ImageNet weights file: `$TORCH_HOME/hub/checkpoints/<file>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / file


def missing_weights_error(network: str, file: str, key: str) -> CheckpointError:
    """The error for an absent hub-cache file: the file, the folder, the URL and the config key to use instead."""
    return CheckpointError(
        f"ImageNet weights for {network} not found: place {file} at {hub_weights_path(file)} (download it from "
        f"{WEIGHTS_URL}{file}, or run python -c \"import torchvision; torchvision.models.{network}"
        f"(weights='IMAGENET1K_V1')\" once while online), or give its path as {key}"
    )
