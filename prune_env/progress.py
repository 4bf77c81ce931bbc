"""Progress, shown the same way by every script.

* On a terminal: a tqdm bar (``bar``) or a status line per step (``steps``), on standard error.
* In a log (standard error is not a terminal: CI, ``nohup``, a pipe): plain lines, one when the
  work starts, then at most one every ``interval`` seconds (30 by default) and one at the end, so
  that a long run's log shows where it is without being filled by a redrawn bar.

``bar(total, desc)`` returns an object with tqdm's ``update``, ``set_postfix``, ``close``, ``n``
and ``total`` (and works as a context manager); ``disable=True`` shows nothing. The scripts'
``--no-progress`` passes ``disable``.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Callable

#: seconds between two lines of a progress report in a log
LOG_INTERVAL = 30.0


def is_terminal(file: IO | None = None) -> bool:
    file = sys.stderr if file is None else file
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):
        return False


def _human(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60:02d}:{seconds % 60:02d}"


class LogBar:
    """A progress report for logs: a line at the start, at most one per ``interval`` seconds, one at the end."""

    def __init__(self, total: float | None = None, desc: str = "", unit: str = "it", initial: float = 0,
                 file: IO | None = None, interval: float = LOG_INTERVAL, disable: bool = False):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.file, self.interval, self.disable = file, float(interval), disable
        self.postfix = ""
        self._start = time.monotonic()
        self._last = -float("inf")
        self._closed = False
        self._emit(force=True)

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        done = f"{self.n:,.0f}" if float(self.n).is_integer() else f"{self.n:,.2f}"
        if self.total:
            pct = 100.0 * self.n / self.total
            eta = elapsed * (self.total - self.n) / self.n if self.n else float("nan")
            text = f"{done}/{self.total:,.0f} {self.unit} ({pct:.0f}%), {_human(elapsed)} elapsed"
            if self.n and self.n < self.total:
                text += f", ~{_human(eta)} left"
        else:
            text = f"{done} {self.unit}, {_human(elapsed)} elapsed"
        return f"{self.desc}: {text}{', ' + self.postfix if self.postfix else ''}" if self.desc else text

    def _emit(self, force: bool = False) -> None:
        if self.disable or self._closed:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            print(self._line(), file=self.file or sys.stderr, flush=True)

    def update(self, n: float = 1) -> None:
        self.n += n
        self._emit()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        self._emit()

    def close(self) -> None:
        if not self._closed:
            self._emit(force=True)
            self._closed = True

    def __enter__(self) -> "LogBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(total: float | None = None, desc: str = "", unit: str = "it", *, initial: float = 0, disable: bool = False,
        file: IO | None = None, interval: float = LOG_INTERVAL, leave: bool = True) -> Any:
    """A tqdm bar on a terminal (``leave=False``: erased when done), a :class:`LogBar` otherwise (module docstring)."""
    if not disable and is_terminal(file):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=file, dynamic_ncols=True, leave=leave)
    return LogBar(total, desc, unit, initial, file, interval, disable)


def steps(desc: str, *, disable: bool = False, file: IO | None = None) -> Callable[[str], None]:
    """A function ``say(step)`` that reports each step of a long job as it starts, with the time so far:
    ``desc: step (12 s)``, a line each, on a terminal and in a log alike."""
    start = time.monotonic()

    def say(step: str) -> None:
        if not disable:
            print(f"{desc}: {step} ({time.monotonic() - start:.0f} s)", file=file or sys.stderr, flush=True)

    return say


__all__ = ["LOG_INTERVAL", "LogBar", "bar", "is_terminal", "steps"]
