"""Pieces every command-line tool shares: error reporting and exit codes."""
from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence

from torch_sr.errors import TorchSRError
from torch_sr.pixel_limit import DEFAULT_MAX_PIXELS

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


def add_max_pixels_option(parser: argparse.ArgumentParser) -> None:
    """`--max-pixels N`: the largest image decoded (see `torch_sr.pixel_limit`); apply it with `set_max_pixels`."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse images of more than N pixels, from their header, before decoding (default: %(default)s)",
    )
