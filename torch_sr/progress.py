"""Progress bars for people, not logs: tqdm on stderr, drawn only when stderr is a terminal.

A terminal that reports no size (0 x 0: a fresh pseudo-terminal, some ssh sessions and
containers) makes tqdm draw nothing at all, which looks like a hung command; such a terminal
gets `FALLBACK_SIZE`.
"""
from __future__ import annotations

import os
import sys
from typing import Any

FALLBACK_SIZE = (80, 24)  # columns, lines


def terminal_size(stream: Any) -> tuple[int, int] | None:
    """(columns, lines) of the terminal `stream` writes to (`FALLBACK_SIZE` if it reports none); None off a terminal."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):  # no isatty, or closed
        return None
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a terminal-like object without a descriptor
        columns = lines = 0
    return columns or FALLBACK_SIZE[0], lines or FALLBACK_SIZE[1]


def progress_bar(total: int | None = None, *, unit: str, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr with rate and time left, or (not a terminal, or `enabled` False) one that draws nothing."""
    from tqdm import tqdm

    stream = sys.stderr
    size = terminal_size(stream) if enabled else None
    columns, lines = size or (None, None)
    return tqdm(total=total, unit=unit, file=stream, ncols=columns, nrows=lines, disable=size is None, **options)
