"""Safe reading and atomic writing of weight files (`.pth`/`.pt`/`.ckpt` and `.safetensors`)."""
from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from torch_sr.errors import CheckpointError

SAFETENSORS_SUFFIX = ".safetensors"


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(f)` into a temporary sibling, then rename it over `path`.

    An interrupted or failing write leaves the previous file (if any) untouched and no temporary
    file behind. The file gets the permissions `open()` would give it (0666 less the umask), not
    `mkstemp`'s owner-only 0600, so shared models stay readable by others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def refuse_existing(path: str | os.PathLike) -> None:
    """Raise a `CheckpointError` if `path` exists: tools that derive a new model file never replace one."""
    if os.path.exists(path):
        raise CheckpointError(f"{path} exists; choose a new file name (model files are never overwritten)")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` that never leaves a half-written file in place of a good one."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Atomically write tensors (made contiguous, one copy per shared storage) as safetensors."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write(path, lambda f: f.write(data))


def read_weights(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """Load a weights file without executing pickled code.

    Returns the loaded object (for `.safetensors`, the dict of tensors) and the safetensors
    metadata (empty for torch files). Files that would need arbitrary Python objects to unpickle
    are refused.
    """
    path = Path(path)
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise CheckpointError(f"model file not found: {path}{hint}")
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a valid .safetensors file ({e})") from None
        return tensors, metadata
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file contains pickled Python objects other than tensors and "
            f"plain containers, and loading it could execute code ({first_line}). If you trust its "
            f"source, re-save just its weights: torch.save(model.state_dict(), 'clean.pth')."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch weights file ({e})") from None
    return obj, {}
