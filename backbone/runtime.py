"""Where the toolkit meets the machine: the device is chosen here, and only here.

The CUDA-specific switches (cudnn.benchmark) stay in this file so that everything else is plain,
device-agnostic PyTorch that the CPU test suite exercises.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Literal

import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]


def select_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if choice not in ("auto", "cpu", "cuda") and not choice.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={choice} asked for, but PyTorch sees no CUDA GPU: use device=cpu or auto")
        torch.backends.cudnn.benchmark = True  # fixed input sizes per batch: let cuDNN pick kernels
    return torch.device(choice)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_cpu_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large freed buffers in glibc's heap instead of returning them to the OS.

    glibc serves every allocation above 32 MiB with a fresh ``mmap``, so a CNN at batch 32
    page-faults its activations in again on every forward pass; on this project's 2-core machines
    that cost torchvision's GoogLeNet a quarter of its throughput (README, "Benchmarks"). PyTorch's
    CPU tuning guide suggests swapping in jemalloc or tcmalloc for the same reason; raising glibc's
    thresholds does it without a preload. Returns False where glibc is not the allocator.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes))
    except (OSError, AttributeError):
        return False
