"""What every benchmark shares: timing (median of repeats after warm-ups, GPU work waited for)
and the options every subcommand takes."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from core.runtime import synchronize


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def add_command(sub, name: str, help: str, batch: int, size: int, repeats: int, warmup: int,
                device: str) -> argparse.ArgumentParser:
    """A subcommand with the options every benchmark shares, at its own defaults."""
    c = sub.add_parser(name, help=help)
    c.add_argument("--batch", type=int, default=batch)
    c.add_argument("--size", type=int, default=size)
    c.add_argument("--repeats", type=int, default=repeats)
    c.add_argument("--warmup", type=int, default=warmup)
    c.add_argument("--device", default=device, help=f"auto | cpu | cuda (default {device})")
    c.add_argument("--allocator", choices=("tuned", "glibc"), default="tuned",
                   help="tuned: keep large buffers in glibc's heap (core.runtime.tune_cpu_allocator), "
                        "for every model alike; glibc: the default allocator")
    return c
