"""Models shipped inside the package, used when a command is given no `-m MODEL`.

The table below names every shipped file; a model is only used once its file is actually
installed here (package data), so an entry without a file gives a clear message, not a crash.
"""
from __future__ import annotations

from pathlib import Path

from torch_sr.errors import TorchSRError

WEIGHTS_DIR = Path(__file__).resolve().parent
# name -> file in this folder
MODELS: dict[str, str] = {
    "esrgan_x4": "esrgan_x4.pth",
}
# scale -> name of the default model for it
DEFAULTS: dict[int, str] = {
    4: "esrgan_x4",
}


def default_model_path(scale: int = 4) -> Path:
    """Path of the shipped default model for `scale`, or a TorchSRError saying how to pass one."""
    name = DEFAULTS.get(scale)
    if name is None:
        known = ", ".join(f"x{s}" for s in sorted(DEFAULTS))
        raise TorchSRError(
            f"no default model for x{scale} (defaults exist for {known}); pass a model with -m MODEL "
            "(a torch_sr, ESRGAN, BasicSR or Real-ESRGAN .pth or .safetensors file)"
        )
    path = WEIGHTS_DIR / MODELS[name]
    if not path.is_file():
        raise TorchSRError(
            f"the default x{scale} model ({name}) is not installed in {WEIGHTS_DIR}; pass a model with -m MODEL "
            "(a torch_sr, ESRGAN, BasicSR or Real-ESRGAN .pth or .safetensors file)"
        )
    return path
