"""Pieces every command-line tool shares: error reporting and device choice."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

import torch

from torch_sr.errors import TorchSRError

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2


def reports_errors(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Turn a `TorchSRError` into a one-line message on stderr and exit status 2 (no traceback)."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except TorchSRError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TorchSRError(f"--device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TorchSRError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TorchSRError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return device
