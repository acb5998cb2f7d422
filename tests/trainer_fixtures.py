"""Shared by the trainer tests: small image folders and tiny configs that train in seconds on a CPU."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def make_images(folder: Path, count: int, size: tuple[int, int] = (48, 48), seed: int = 0) -> Path:
    """`count` smooth random RGB PNGs (bicubic-enlarged noise) of `size` (H, W) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    for k in range(count):
        small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(folder / f"img{k:02d}.png")
    return folder


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def tiny_config(train_dir: Path, val_dir: Path, **changes: Any) -> dict[str, Any]:
    """Both stages of a ~10 k-parameter RRDBNet on 16-pixel patches; `changes` are merged in deeply."""
    stage = {
        "num_iterations": 4,
        "cr_patch_size": [16, 16],
        "scheduler": "constant",
        "train_datasets": [str(train_dir)],
        "val_datasets": [str(val_dir)],
        "val_interval": 2,
        "hard_transforms": False,
    }
    base = {
        "scale_factor": 4,
        "batch_size": 4,
        "seed": 0,
        "pretraining": {**stage, "lr": 5e-4},
        "training": dict(stage),
        "generator": {"arch": "rrdbnet", "rrdb_channels": 8, "growth_channels": 4, "num_basic_blocks": 1,
                      "num_dense_blocks": 1},
        "discriminator": {"arch": "vgg_discriminator", "vgg_blk_ch": [8, 8, 16], "fc_features": [8], "input_size": 16},
        "perceptual_loss": {"layer_weights": {"conv2_1": 1.0}, "vgg_type": "vgg11", "pretrained": False},
        "data": {"num_workers": 0, "cache": True},
        "logging": {"log_interval": 1, "val_images": 1, "tensorboard": False},
    }  # fmt: skip
    return deep_update(base, changes)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(json.dumps(cfg, indent=1))
    return path


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """A hash of a state dict's names and exact tensor bytes."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_same_state(a: Any, b: Any, path: str = "") -> None:
    """Recursively equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def subprocess_env() -> dict[str, str]:
    """The environment for a Python subprocess that imports torch_sr from this checkout."""
    import os

    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
