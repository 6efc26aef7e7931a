"""Run every CUDA path once, before the first long job on a new machine.

    python tools/selfcheck.py [--device auto|cpu|cuda] [--amp auto|bf16|fp16] [--size small|full] [--json FILE]
    make check

On the device the runtime picks (a GPU if there is one): a pretraining step with the auxiliary
heads, detector training steps with the C4 and FPN heads, an evaluation batch, a two-member
shared ensemble (each in fp32 and under autocast), TorchScript export parity and, with two GPUs
(or on the CPU), a two-process DDP step against one process. Every result is compared with the
same computation in fp32 on the CPU (tolerances in tools/checks/common.py; docs/gpu.md). Prints a
table (stage, dtype, images/s, peak memory, status); exit 1 if a row fails.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from checks import detector, pretrain
from checks.common import SIZES, Row
from core.atomic import write_json_atomic
from core.cli import EXIT_FAILED, EXIT_OK, run_guarded
from core.runtime import amp_name, select_device, tune_cpu_allocator


def line(r: Row) -> str:
    def num(x: float, fmt: str) -> str:
        return "-".rjust(9) if math.isnan(x) else format(x, fmt)

    status = ("ok" if r.ok else "FAIL") + (f"  {r.detail}" if r.detail else "")
    return f"{r.stage:<30} {r.dtype:<5} {num(r.images_per_s, '9.1f')} {num(r.peak_mib, '9.0f')}  {status}"


def stages(device, modes: list[str], size: dict):
    """The rows, each as soon as its stage is done (a hung stage leaves the ones before it printed)."""
    yield from pretrain.pretrain_rows(device, modes, size)
    yield from detector.train_rows(device, modes, size)
    yield from detector.eval_rows(device, modes, size)
    yield detector.export_row(device, size)
    yield pretrain.ddp_row(device, size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", choices=("auto", "bf16", "fp16"), default=None,
                   help="the mixed precision to check beside fp32 (default: what amp=auto picks on a GPU, bf16 "
                        "on the CPU)")
    p.add_argument("--size", choices=tuple(SIZES), default=None,
                   help="small: tiny images (the CPU's default); full: the paper's sizes (a GPU's default)")
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args(argv)

    def body() -> int:
        device = select_device(a.device)
        if device.type == "cpu":
            tune_cpu_allocator()
        amp = a.amp or ("auto" if device.type == "cuda" else "bf16")
        modes = ["off", amp] if amp_name(device, amp) != "fp32" else ["off"]
        size = SIZES[a.size or ("full" if device.type == "cuda" else "small")]
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"selfcheck: {name}, torch {torch.__version__}, checking fp32 and {amp_name(device, amp)} against "
              f"fp32 on the CPU", flush=True)
        tic = time.perf_counter()
        memory = "peak MiB" if device.type == "cuda" else "RSS MiB"
        print(f"{'stage':<30} {'dtype':<5} {'images/s':>9} {memory:>9}  status\n" + "-" * 76, flush=True)
        rows = []
        for row in stages(device, modes, size):
            rows.append(row)
            print(line(row), flush=True)
        failed = [r for r in rows if not r.ok]
        print(f"selfcheck: {len(rows) - len(failed)} of {len(rows)} rows ok in {time.perf_counter() - tic:.0f} s"
              + (f"; FAILED: {', '.join(f'{r.stage} ({r.dtype})' for r in failed)}" if failed else ""))
        if a.json:
            write_json_atomic(a.json, {"device": name, "torch": torch.__version__, "rows": [vars(r) for r in rows]})
        return EXIT_FAILED if failed else EXIT_OK

    return run_guarded("selfcheck", body)


if __name__ == "__main__":
    raise SystemExit(main())
