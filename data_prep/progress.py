"""Progress of the long stages (synth, prep, train, predict, evaluate): one helper decides how it
shows, so every command behaves alike.

- On a terminal (stderr is a tty): a tqdm bar, redrawn in place.
- In a pipe or a log file: a plain line each time another 10 % is done or 30 s have passed since
  the last line, and one at the end, e.g. ``train: 40/200 steps (20%), 12 s, eta 48 s, loss
  0.2135``; a batch job's log gets a dozen lines, not thousands of carriage returns.
- Under ``--quiet`` (:func:`quiet`): nothing. Errors and warnings still print, and so do the
  closing lines on stdout that name what a command wrote.

Messages that belong with the progress (a validation line, where a resumed run starts) go through
:func:`note`: silent under ``--quiet``, written above the bar on a terminal.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

PERCENT_STEP = 10  # a plain line each time another PERCENT_STEP % is done
SECONDS = 30.0  # ... or when this long has passed since the last line
# every line a PlainBar prints ("prep: gridding: 2/3 files (66%), 9 s, eta 4 s"), for log filters
PLAIN_LINE = re.compile(r"^[^\n]+: [\d,]+(/[\d,]+)? [a-z]+s( \(\d+%\))?, \d[^\n]*$")


class _Settings:
    quiet = False


def is_quiet() -> bool:
    """Whether progress and notes are silenced (``--quiet``)."""
    return _Settings.quiet


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Silence progress bars, plain progress lines and notes inside the block when ``on``
    (the CLI's ``--quiet``; ``train.progress=false`` for training); nests, restores on exit."""
    before = _Settings.quiet
    _Settings.quiet = before or bool(on)
    try:
        yield
    finally:
        _Settings.quiet = before


def on_terminal() -> bool:
    """Whether stderr is a terminal (bars redraw in place) rather than a pipe or a file."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "step",
    initial: int = 0,
    enabled: bool = True,
) -> Bar:
    """A progress bar over ``iterable`` (or ``total`` units counted with ``update(n)``).

    Returns a tqdm bar on a terminal, a :class:`PlainBar` in a pipe, a disabled tqdm under
    :func:`quiet`; all three iterate, ``update(n)``, ``set_postfix(key=value)`` and ``close()``,
    and work as context managers. ``unit`` is singular (``file``, ``step``, ``init``);
    ``enabled=False`` gives the silent bar.
    """
    if _Settings.quiet or not enabled:
        return tqdm(iterable, total=total, disable=True)
    if on_terminal():
        return tqdm(
            iterable, desc=desc, total=total, unit=unit, initial=initial, dynamic_ncols=True
        )
    return PlainBar(iterable, desc=desc, total=total, unit=unit, initial=initial)


def note(line: str) -> None:
    """One line of progress news on stderr (above a bar on a terminal); nothing under --quiet."""
    if _Settings.quiet:
        return
    if on_terminal():
        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


class PlainBar:
    """tqdm's interface for a pipe: plain lines on stderr at the start, every
    :data:`PERCENT_STEP` % or :data:`SECONDS` seconds, and at :meth:`close` when the last line
    was not the end."""

    def __init__(self, iterable=None, *, desc: str, total=None, unit="step", initial=0):
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.desc, self.total, self.unit = iterable, desc, total, unit
        self.n = self.start = self.shown = initial
        self.t0 = self.t_line = time.monotonic()
        self.postfix, self.closed = "", False
        self._line(self.t0)  # the stage has started, and how much it has to do

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> PlainBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; print a line when another step of percent or time is due."""
        self.n += n
        now = time.monotonic()
        crossed = self.total and _tenth(self.n, self.total) > _tenth(self.shown, self.total)
        if crossed or now - self.t_line >= SECONDS:
            self._line(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values) -> None:
        """Values shown at the end of the next line, e.g. ``loss 0.2135``."""
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        """The last line, unless the line before already showed the final count."""
        if not self.closed and self.n != self.shown:
            self._line(time.monotonic())
        self.closed = True

    def _line(self, now: float) -> None:
        elapsed = now - self.t0
        count = f"{self.n:,} {self.unit}s"
        parts = [count, duration(elapsed)]
        if self.total:
            parts[0] = f"{self.n:,}/{self.total:,} {self.unit}s ({100 * self.n // self.total}%)"
            done = self.n - self.start
            if 0 < done and self.n < self.total:
                parts.append(f"eta {duration(elapsed / done * (self.total - self.n))}")
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.desc}: {', '.join(parts)}", file=sys.stderr, flush=True)
        self.shown, self.t_line = self.n, now


Bar = tqdm | PlainBar  # what :func:`bar` returns


def _tenth(n: int, total: int) -> int:
    """Which PERCENT_STEP-% step of ``total`` the count ``n`` has reached."""
    return math.floor(100 * n / total / PERCENT_STEP)


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
