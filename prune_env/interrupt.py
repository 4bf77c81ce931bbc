"""Ctrl-C at a safe point: inside :func:`deferred_interrupt` the first SIGINT waits for a step boundary.

A ``KeyboardInterrupt`` raised in the middle of a training step can leave the state half updated
(BatchNorm statistics of a batch whose optimizer step never ran, some parameters stepped and
others not), and a checkpoint saved then does not resume to what an uninterrupted run computes.
Training loops therefore call :func:`check_interrupt` after each whole step: the first Ctrl-C is
raised there, a second one at once (for a step that hangs).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

_pending = {"requested": False, "active": False}


def _hold(signum: int, frame: object) -> None:
    if _pending["requested"]:  # the second Ctrl-C: now
        raise KeyboardInterrupt
    _pending["requested"] = True


@contextlib.contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[None]:
    """Hold the first SIGINT until :func:`check_interrupt` (or the end of the block), then raise ``KeyboardInterrupt``.

    Does nothing when ``enabled`` is False, outside the main thread, inside another deferred
    block, or when SIGINT has a handler other than Python's default (someone else handles it).
    """
    usable = (enabled and not _pending["active"] and threading.current_thread() is threading.main_thread()
              and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if not usable:
        yield
        return
    previous = signal.signal(signal.SIGINT, _hold)
    _pending.update(requested=False, active=True)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        requested = _pending["requested"]
        _pending.update(requested=False, active=False)
    if requested:  # asked for during the block's last step
        raise KeyboardInterrupt


def check_interrupt() -> None:
    """Raise the held ``KeyboardInterrupt``, if Ctrl-C was pressed since the block began."""
    if _pending["requested"]:
        _pending["requested"] = False
        raise KeyboardInterrupt
