"""Progress that suits where it goes: a tqdm bar on a terminal; plain log lines when stderr is a
file or a pipe (a batch job, ``> log``, ``nohup``, CI), where a bar's carriage-return refreshes
pile up into thousands of fragments on a handful of lines. The lines come every
``PROGRESS_SECONDS`` seconds (environment; 20 by default) and when a pass ends, as detectron2's
and mmdetection's loggers print them::

    epoch 3/12  step 14/25 (56%)  loss 1.503  lr 1.73e-02  ips 16.2  1.95 s/it  eta 0:00:21

``enabled=False`` (``progress=false``) silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

DEFAULT_SECONDS = 20.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("PROGRESS_SECONDS", DEFAULT_SECONDS)))
    except ValueError:
        return DEFAULT_SECONDS


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LogProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` / iteration, written as log lines.
    ``leave=False`` passes (inference inside an epoch) print a closing line only when they ran
    long enough to print before it."""

    def __init__(self, iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0,
                 desc: str = "", leave: bool = True, every: float | None = None, stream=None, unit: str = "") -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.n, self.start_n = iterable, total, initial, initial
        self.desc, self.leave, self.postfix, self.unit = desc, leave, "", unit
        self.every = _interval() if every is None else every
        self.stream = stream if stream is not None else sys.stderr
        self.started = self.last = time.perf_counter()
        self.printed, self.closed, self.written_n = 0, False, None

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, **values) -> None:
        self.postfix = "  ".join(f"{k} {v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self._write(now)

    def line(self, now: float) -> str:
        done = self.n - self.start_n
        elapsed = now - self.started
        parts = [self.desc] if self.desc else []
        what = self.unit or "step"
        parts.append(f"{what} {self.n}/{self.total} ({100 * self.n // max(self.total, 1)}%)" if self.total
                     else f"{what} {self.n}")
        if self.postfix:
            parts.append(self.postfix)
        if done:  # counted things (images) as a rate, steps as seconds each
            rate = f"{done / max(elapsed, 1e-9):.1f} {self.unit}/s" if self.unit else f"{elapsed / done:.2f} s/it"
            parts.append(rate)
            if self.total and self.n < self.total:
                parts.append(f"eta {_clock(elapsed / done * (self.total - self.n))}")
            elif self.total:
                parts.append(f"took {_clock(elapsed)}")
        return "  ".join(parts)

    def _write(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)
        self.printed, self.written_n = self.printed + 1, self.n

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if (self.leave or self.printed) and self.written_n != self.n:  # not the line just written again
            self._write(time.perf_counter())


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0, desc: str = "",
             enabled: bool = True, leave: bool = True, unit: str = ""):
    """A bar on a terminal, log lines elsewhere, nothing when not ``enabled``; tqdm's interface
    (iterate it, or ``update`` / ``set_postfix`` / ``close``). With a ``unit`` ("img") the rate is
    things a second, else seconds a step."""
    if enabled and not sys.stderr.isatty():
        return LogProgress(iterable, total=total, initial=initial, desc=desc, leave=leave, unit=unit)
    return tqdm(iterable, total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=leave, unit=unit or "it")
