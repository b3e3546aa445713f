"""Progress of long work: a tqdm bar on a terminal; anywhere else (a log file, CI, `nohup`) one
plain line every LINE_SECONDS seconds and one at the end, so that a log holds readable periodic
lines instead of a carriage-return stream. `FLOWFORGE_PROGRESS_SECONDS` sets the interval."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

LINE_SECONDS = 30.0


class ProgressLines:
    """The subset of tqdm's interface the package uses (update, set_postfix, n, close, iteration,
    context manager), printed as lines to stderr."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, interval: float | None = None):
        self.iterable, self.desc, self.unit, self.n = iterable, desc, unit, initial
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.interval = interval if interval is not None else float(os.environ.get("FLOWFORGE_PROGRESS_SECONDS",
                                                                                   LINE_SECONDS))
        self._start = self._last = time.monotonic()
        self._start_n, self._postfix, self._closed = initial, "", False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.n > self._start_n:
                self._print(time.monotonic())

    def _print(self, now: float) -> None:
        elapsed = now - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        extra = f", {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {count} {self.unit} [{elapsed:.0f} s, {rate:.2f} {self.unit}/s{extra}]",
              file=sys.stderr, flush=True)


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
                 disable: bool = False, initial: int = 0, leave: bool = True, **tqdm_options):
    """tqdm on a terminal, ProgressLines elsewhere, a silent tqdm when `disable`."""
    if disable or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, initial=initial, leave=leave,
                    **tqdm_options)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit, initial=initial)
