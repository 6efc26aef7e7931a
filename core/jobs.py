"""Several runs of a tool at once, each in its own process: the ensemble's members on one machine.

On a CPU, small models use a core poorly: a detector step at 128-160 px is dozens of small
convolutions whose intra-op threads wait on each other, so two members with one thread each train
in little more than the time of one member with two (docs/learning.md, second round). On a machine with
several GPUs, each run gets one of them. Each run's output lines come through prefixed with its
label; progress bars become plain lines, since a run's output is a pipe, not a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    label: str           # the prefix of its output lines, e.g. "model_3"
    argv: list[str]      # the command, e.g. [sys.executable, "tools/train_det.py", ...]


def job_env(base: dict[str, str], slot: int, threads: int, gpus: Sequence[str]) -> dict[str, str]:
    """The environment of the run in ``slot`` (0..jobs-1): ``threads`` intra-op threads (OpenMP and
    MKL, read by torch at start-up), and with ``gpus`` the one GPU ``gpus[slot % len(gpus)]``."""
    env = {**base, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def visible_gpus(environ: dict[str, str]) -> list[str]:
    """The GPUs a run may be given: ``CUDA_VISIBLE_DEVICES``'s entries when set, else those torch
    sees (none without CUDA)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def threads_per_job(jobs: int, cpus: int | None = None) -> int:
    """The machine's cores shared out between ``jobs`` runs, at least one each."""
    return max(1, (cpus or os.cpu_count() or 1) // jobs)


def _pump(proc: subprocess.Popen, label: str, lock: threading.Lock, out: Callable[[str], None]) -> None:
    for line in proc.stdout:
        with lock:
            out(f"[{label}] {line.rstrip()}")


def run_jobs(jobs: Sequence[Job], parallel: int, *, threads: int | None = None, gpus: Sequence[str] = (),
             out: Callable[[str], None] = print) -> dict[str, int]:
    """Run ``jobs``, ``parallel`` at a time, in order; return the exit code of each run that ran,
    by label. After a run fails no new one starts (those running finish). One at a time, a run
    writes to this terminal itself (its progress bars included). Ctrl-C stops every run: the same
    signal reaches each, and each checkpoints and exits."""
    threads = threads or threads_per_job(parallel)
    pipe = parallel > 1
    lock = threading.Lock()
    pending, running, codes = list(jobs), {}, {}  # running: slot -> (job, proc, pump thread)
    try:
        while pending or running:
            failed = any(c != 0 for c in codes.values())
            for slot in range(parallel):
                if slot in running or not pending or failed:
                    continue
                job = pending.pop(0)
                env = job_env(dict(os.environ), slot, threads, gpus)
                if not pipe:
                    running[slot] = (job, subprocess.Popen(job.argv, env=env), None)
                    continue
                proc = subprocess.Popen(job.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
                pump = threading.Thread(target=_pump, args=(proc, job.label, lock, out), daemon=True)
                pump.start()
                running[slot] = (job, proc, pump)
            if failed and not running:
                break
            for slot, (job, proc, pump) in list(running.items()):
                try:
                    proc.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                if pump is not None:
                    pump.join()
                codes[job.label] = proc.returncode
                del running[slot]
    except KeyboardInterrupt:
        for _, proc, _ in running.values():
            proc.wait()
        raise
    return codes


def python_tool(script: str, *args: str) -> list[str]:
    """The command running ``script`` with this interpreter."""
    return [sys.executable, script, *args]
