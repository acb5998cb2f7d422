"""torch_sr: single-image and video super-resolution with ESRGAN-family models.

Importing the package is cheap: sub-modules (and their heavy dependencies such as
albumentations, tensorboard or wandb) are loaded only when first used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, resolved lazily (PEP 562) so `import torch_sr` stays light.
_LAZY = {
    "RRDBNet": "torch_sr.archs.rrdbnet",
    "VGGStyleDiscriminator": "torch_sr.archs.vgg_discriminator",
    "GeneratorInfo": "torch_sr.archs.description",
    "build_generator": "torch_sr.archs.registry",
    "build_discriminator": "torch_sr.archs.registry",
    "load_model": "torch_sr.model_files.model_file",
    "save_model": "torch_sr.model_files.model_file",
    "load_config": "torch_sr.config.validate",
    "TorchSRError": "torch_sr.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'torch_sr' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
