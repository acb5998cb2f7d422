"""Pieces every command-line tool shares: error reporting and exit codes."""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence

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
