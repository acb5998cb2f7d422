"""Pieces every command-line tool shares: error reporting, exit codes and how `--help` lists them.

Kept free of torch (like the tools' parsers) so that `--help` answers at once.
"""
from __future__ import annotations

import argparse
import functools
import os
import re
import select
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from torch_sr.errors import TorchSRError
from torch_sr.pixel_limit import DEFAULT_MAX_PIXELS

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away
EXIT_TERMINATED = 143  # 128 + SIGTERM (a cluster's time limit, `kill`)


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so that `finally` blocks run and temporary files go. A
    BaseException, like KeyboardInterrupt: no `except Exception` (a damaged-file check, say) may take it."""


def reports_errors(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Turn a `TorchSRError` into a one-line message on stderr and exit status 2 (no traceback); a reader
    that closed our output (`| head`) ends the command quietly, as it would end `cat`."""

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        previous = _raise_on_sigterm()
        try:
            return main(argv)
        except TorchSRError as e:
            print(f"error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Terminated:
            print("terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        except BrokenPipeError:
            if not _stdout_closed():
                raise  # another pipe (an encoder's, say): a real failure, with its traceback
            # Python's advice: point the closed stream at devnull, so the flush at exit raises nothing more
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError, AttributeError):  # a replaced stdout (tests, notebooks): nothing to flush
                pass
            return EXIT_BROKEN_PIPE
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


_WORKER_TRACEBACK = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback", re.ASCII)


def _one_line(error: TorchSRError) -> str:
    """The message; for an error a DataLoader worker raised, its own last line (PyTorch re-raises it
    with the worker's whole traceback in the message)."""
    message = str(error)
    if not _WORKER_TRACEBACK.match(message):
        return message
    last = message.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if last.startswith(f"{type(error).__module__}.{type(error).__name__}: ") else last


def _raise_on_sigterm() -> signal.Handlers | Callable | None:
    """Make SIGTERM raise `Terminated` (Python's default ends the process at once, leaving a download's
    or an output's temporary file behind); the previous handler, to restore. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None
    owner = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != owner:  # a forked child (a DataLoader worker): end as SIGTERM ends a process
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    return signal.signal(signal.SIGTERM, handler)


def _stdout_closed() -> bool:
    """Whether the reader of our standard output has gone away (its pipe reports an error)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced stdout (tests, notebooks)
        return False
    if not hasattr(select, "poll"):  # Windows: no way to ask; assume it was ours
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def command_name(script: str, installed: str) -> str:
    """The name the user typed, for usage lines and "see ... --help" hints: `installed` (`torch-sr-inference`)
    when that command runs, else `script` (`inference.py`: from a checkout, or a step of torch-sr-reproduce)."""
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return installed if called == installed else script


def exit_status_epilog(meanings: Mapping[int, str]) -> str:
    """The `--help` epilog listing a command's exit statuses (for `HelpFormatter`); Ctrl-C's 130, a
    closed pipe's 141 and SIGTERM's 143 (`reports_errors` ends every command so) are added."""
    codes = {
        **meanings,
        EXIT_INTERRUPTED: meanings.get(EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
        EXIT_BROKEN_PIPE: meanings.get(EXIT_BROKEN_PIPE, "the reader of the output went away (| head): stopped quietly"),
        EXIT_TERMINATED: meanings.get(EXIT_TERMINATED, "terminated (SIGTERM), leaving no half-written file"),
    }
    width = max(len(str(code)) for code in codes) + 2
    return "exit status:\n" + "\n".join(f"  {str(code).ljust(width)}{text}" for code, text in sorted(codes.items()))


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line, like every other error of these commands:
    `error: <what> (see <command> --help)` and status 2, without the usage block above it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that each line of the description and epilog is wrapped on its own,
    keeping its indent: the exit-status list stays a list."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            body = line.lstrip()
            lead = indent + line[: len(line) - len(body)]
            code = re.match(r"\d+\s+", body)  # an exit-status line: wrap under its text
            hang = lead + " " * (code.end() if code else 0)
            lines.append(textwrap.fill(body, width, initial_indent=lead, subsequent_indent=hang) if body else "")
        return "\n".join(lines)


def add_max_pixels_option(parser: argparse.ArgumentParser) -> None:
    """`--max-pixels N`: the largest image decoded (see `torch_sr.pixel_limit`); apply it with `set_max_pixels`."""
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse images (and video frames) of more than N pixels, from their header, before decoding "
        "(default: %(default)s)",
    )
