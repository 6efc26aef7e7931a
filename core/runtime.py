"""Where the toolkit meets the machine: the device, the processes, mixed precision and the CPU
allocator are chosen here, and only here.

The CUDA-specific switches (cudnn.benchmark, NCCL, autocast dtypes) stay in this file so that
everything else is plain, device-agnostic PyTorch that the CPU test suite exercises.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Literal

import torch
import torch.distributed as dist

from .config import ConfigError
from .errors import UserError

DeviceChoice = Literal["auto", "cpu", "cuda"]


class DeviceError(UserError, RuntimeError):
    """A device that is not there or not a device name."""


def select_device(choice: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if choice not in ("auto", "cpu", "cuda") and not choice.startswith("cuda:"):
        raise DeviceError(f"device must be auto, cpu, cuda or cuda:N, got {choice!r}")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={choice} asked for, but PyTorch sees no CUDA GPU: use device=cpu or auto")
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
    page-faults its activations in again on every forward pass; on 2-core machines that costs
    torchvision's GoogLeNet a quarter of its throughput (docs/benchmarks.md). PyTorch's CPU
    tuning guide suggests swapping in jemalloc or tcmalloc for the same reason; raising glibc's
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


def init_distributed(device_choice: str = "auto") -> tuple[torch.device, int, int]:
    """Start torch.distributed when launched by torchrun (RANK/WORLD_SIZE in the environment):
    NCCL on CUDA, gloo on the CPU. Returns ``(device, rank, world_size)``; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world == 1:
        return select_device(device_choice), 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_choice)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} processes on "
                              f"this machine, which has {torch.cuda.device_count()} GPU(s): one process a GPU "
                              f"(--nproc_per_node {torch.cuda.device_count()}), or device=cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def start(device_choice: str = "auto") -> tuple[torch.device, int, int]:
    """What a training or scoring process does first: :func:`init_distributed`, and on the CPU
    :func:`tune_cpu_allocator`. Returns ``(device, rank, world_size)``."""
    device, rank, world = init_distributed(device_choice)
    if device.type == "cpu":
        tune_cpu_allocator()
    return device, rank, world


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or the only process (before or without ``init_distributed``)."""
    return int(os.environ.get("RANK", "0")) == 0


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()



def amp_dtype(device: torch.device, mode: str | bool) -> torch.dtype | None:
    """The autocast dtype ``mode`` asks for on ``device`` (None: plain fp32).

    ``auto``: bf16 on a GPU that has it, else fp16; fp32 on the CPU, where bf16 pays only on
    processors with bf16 matrix units (AMX, AVX512-BF16) and is slower elsewhere. ``bf16`` and
    ``fp16`` are the same autocast on either device, which is how the CPU test suite runs the
    mixed-precision path that GPUs take."""
    if isinstance(mode, bool):
        mode = "auto" if mode else "off"
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(f"amp=bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use amp=fp16 or auto")
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    raise ConfigError(f"amp must be auto, bf16, fp16 or off, got {mode!r}")


def amp_for(device: torch.device, mode: str | bool):
    """``(autocast_factory, grad_scaler_or_None)`` for :func:`amp_dtype`'s choice: one code path
    for ``cuda`` and ``cpu``. fp16 gets a gradient scaler (its range underflows small gradients);
    bf16 has fp32's range and needs none."""
    dtype = amp_dtype(device, mode)
    if dtype is None:
        return contextlib.nullcontext, None
    autocast = functools.partial(torch.autocast, device_type=device.type, dtype=dtype)
    return autocast, (torch.amp.GradScaler(device.type) if dtype == torch.float16 else None)


def amp_name(device: torch.device, mode: str | bool) -> str:
    """``bf16``, ``fp16`` or ``fp32``: what ``mode`` runs as on ``device`` (for logs and tables)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(device, mode)]


def split_batch(batch_size: int, world: int) -> int:
    """The per-process share of a global batch; it must divide evenly."""
    if batch_size % world:
        raise ConfigError(f"batch_size={batch_size} must divide among {world} processes")
    return batch_size // world
