"""Ctrl-C and SIGTERM ask training to stop after the current iteration, writing a checkpoint.

The handler only records the request; the loop finishes the iteration under way (its forward
passes have already moved batch-norm statistics and the RNG) and checkpoints the completed state,
so the run resumes exactly. A second Ctrl-C gives up waiting and raises `KeyboardInterrupt` at once.
Outside the loop (a dataset download, say) a signal stops the run at once.
"""
from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StoppedOutsideTheLoop(BaseException):  # like KeyboardInterrupt: no `except Exception` may swallow it
    """A signal while no iteration is under way (reading or downloading data, building networks):
    there is nothing to finish, so the run stops at once; its last checkpoint, if any, stays."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(
            f"received {name} while preparing a stage: stopped (--resume continues from the last checkpoint, if any)"
        )
        self.exit_code = 128 + signum


class StopRequest:
    """Why training should stop, if it should: the signal number, or a reason of our own. Signals are
    only recorded (`deferred`) while the training loop runs; elsewhere they stop the run at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferred = False

    @contextmanager
    def deferring(self) -> Iterator[None]:
        """The training loop: a signal asks it to finish the iteration under way and checkpoint."""
        self.deferred = True
        try:
            yield
        finally:
            self.deferred = False

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process killed by it."""
        return 128 + (self.signum or 0)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a `StopRequest` while the block runs (main thread only)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    owner = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != owner:  # a DataLoader worker forked while this was installed: the main process decides
            stop.signum = signum
            return
        if stop.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.signum = signum
        if not stop.deferred:
            raise StoppedOutsideTheLoop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
