"""What every self-check stage shares: the result row, its timing and peak memory, the sizes and
the tolerances against the CPU's fp32 reference."""

from __future__ import annotations

import copy
import resource
import time
from dataclasses import dataclass

import torch
from torch import nn

from core.runtime import synchronize

# How far a result may be from the same computation in fp32 on the CPU. fp32 on a GPU is not
# bit-equal to the CPU: cuDNN and cuBLAS sum in other orders, and on Ampere and later convolutions
# run in TF32 by default (10-bit mantissa), which moves a loss in the third or fourth digit. bf16
# keeps 8 significant bits and fp16 11 (autocast keeps the losses and softmax in fp32).
LOSS_RTOL = {"fp32": 5e-3, "bf16": 5e-2, "fp16": 2e-2}  # relative, on the first step's loss
PROB_ATOL = {"fp32": 5e-3, "bf16": 3e-2, "fp16": 1e-2}  # absolute, on class probabilities of fixed regions

# small: the CPU (CI; bf16 without the CPU's own bf16 instructions is emulated and takes 5-10x
# fp32's time, so the sizes are the least that still runs every layer: 96 px leaves the auxiliary
# heads' 5x5/3 pooling one cell); full: a GPU at the paper's sizes (224 px crops, 600 px images,
# the detection config's 2000 training / 300 test regions per image)
SIZES = {
    "small": {"cls_batch": 4, "crop": 96, "det_batch": 2, "det_size": 96, "regions": 32, "steps": 2},
    "full": {"cls_batch": 64, "crop": 224, "det_batch": 2, "det_size": 600, "regions": None, "steps": 5},
}


@dataclass
class Row:
    stage: str
    dtype: str
    images_per_s: float = float("nan")
    peak_mib: float = float("nan")
    ok: bool = True
    detail: str = ""


class Meter:
    """Images per second and peak memory of what runs between ``start()`` and ``stop(images)``:
    the GPU's peak allocation on CUDA, the process's peak resident memory on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.tic = 0.0

    def start(self) -> None:
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.tic = time.perf_counter()

    def stop(self, images: int) -> tuple[float, float]:
        synchronize(self.device)
        rate = images / max(time.perf_counter() - self.tic, 1e-9)
        if self.device.type == "cuda":
            return rate, torch.cuda.max_memory_allocated(self.device) / 2**20
        return rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def on(model: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``model`` on ``device`` (the reference keeps the original on the CPU)."""
    return copy.deepcopy(model).to(device)


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def compare(row: Row, what: str, got: float, limit: float) -> Row:
    """Add ``what = got`` to the row's detail and fail it past ``limit`` (or when not finite)."""
    bad = not (got <= limit)  # NaN fails too
    row.ok = row.ok and not bad
    row.detail = "; ".join(filter(None, [row.detail, f"{what} {got:.2g}{' > ' + format(limit, '.2g') if bad else ''}"]))
    return row


def guarded(row: Row, fn, *args) -> Row:
    """``fn(row, *args)``, which fills the row; an exception fails the row (a failing stage is a
    line of the table, not the end of the check)."""
    try:
        fn(row, *args)
    except Exception as e:
        row.ok, row.detail = False, f"{type(e).__name__}: {e}"
    return row
