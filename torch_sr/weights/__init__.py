"""Models shipped inside the package, used when a command is given no `-m MODEL`.

Every model here was trained by this project with `train.py` from a config in `configs/`, and
has a model card beside it (`<name>.md`: architecture, training config, data, iterations, Set5/Set14
scores from `test.py`, the command that reproduces it). An entry whose file is missing (e.g. a
partial install) gives a clear message, not a crash.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from torch_sr.errors import TorchSRError

WEIGHTS_DIR = Path(__file__).resolve().parent
# name -> file in this folder
MODELS: dict[str, str] = {
    "photo_x4": "photo_x4.pth",  # default_x4 fine-tuned on JPEG / noise / Real-ESRGAN degradations: for real photos
    "photo_gan_x4": "photo_gan_x4.pth",  # photo_x4's sibling fine-tuned with RaGAN on the same inputs: crisp, blends with it
    "default_x4": "default_x4.pth",  # SRVGGNetCompact 64x40, L1 then L1 + luma (PSNR): for clean inputs
    "photo_x2": "photo_x2.pth",  # default_x2 fine-tuned the same way: real photos at x2
    "default_x2": "default_x2.pth",  # SRVGGNetCompact 64x16, L1 then L1 + luma (PSNR): for clean inputs
    "gan_x4": "gan_x4.pth",  # default_x4's sibling fine-tuned with RaGAN (64x40): sharper, blends with it
}
# scale -> name of the default model for it: the photo models, because a user's photo is JPEG-compressed
# and noisy, where the clean-trained default_x4 and default_x2 score below bicubic (see
# torch_sr/weights/photo_x4.md and photo_x2.md); clean inputs: -m default_x4 / -m default_x2.
DEFAULTS: dict[int, str] = {
    4: "photo_x4",
    2: "photo_x2",
}


def _unknown_name(name: str) -> TorchSRError:
    close = difflib.get_close_matches(name, MODELS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TorchSRError(f"no model file or shipped model named {name!r} (shipped: {', '.join(MODELS)}){hint}")


def model_path(name: str) -> Path:
    """Path of the shipped model `name` (a key of `MODELS`), or a TorchSRError listing them."""
    if name not in MODELS:
        raise _unknown_name(name)
    return WEIGHTS_DIR / MODELS[name]


def resolve_model(spec: str | os.PathLike, strict: bool = False) -> Path:
    """A model argument as a path: an existing file as given, else a shipped model's name (`gan_x4`).

    With `strict`, a bare name (no folder, no suffix) that is neither is an error listing the shipped
    names and suggesting the closest; anything else comes back unchanged, for the reader to report.
    """
    path = Path(spec)
    if path.exists() or path.is_symlink():
        return path
    if str(spec) in MODELS:
        return model_path(str(spec))
    if strict and not path.suffix and len(path.parts) == 1:  # a bare name, typed or passed on as a Path
        raise _unknown_name(str(spec))
    return path


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
