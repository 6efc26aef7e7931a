"""Where shards of work run: ``local`` (this process, or a pool of processes on this machine) or
``ray`` (actors on a Ray cluster: one started on this machine, or one joined by its address).

A shard is a list of items (images) that one worker turns into one result. The caller gives
``make_worker``, a picklable, hashable callable that builds the worker function once in each
worker process (a model is loaded there, never shipped), the shards still to do, and what to do
with each result as it comes back (write it to its own file: that is what makes a run resumable).
Both engines retry a shard once: a Python error in it, or its worker process dying (Ray's actor
restarts and task retries; a new process pool here). A shard that fails twice is returned as a
:class:`Failure`, never dropped.

Float results depend on the number of threads each worker runs (oneDNN's convolutions sum in
another order), so both engines run every worker with ``threads`` threads: the same ``--workers``
and ``--threads`` give the same results on either engine.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from .errors import UserError

ENGINES = ("local", "ray")
Shard = tuple[int, list]  # (its index, its items)


class EngineError(UserError):
    """An engine that cannot be used as asked (Ray not installed, a cluster that cannot be reached)."""


@dataclass(frozen=True)
class Engine:
    """``name``: local or ray; ``workers``: processes (local) or actors (ray) at once, 0 for every
    CPU (ray: the cluster's, or its GPUs with ``gpus``); ``threads``: torch threads in each, 0 for
    this machine's cores shared between ``workers``; ``address``: the Ray cluster to join (None:
    ``RAY_ADDRESS``, else one started on this machine for the run); ``gpus``: GPUs a Ray actor asks
    for (-1: one if the cluster has GPUs; a local worker uses the device it is given)."""

    name: str = "local"
    workers: int = 1
    threads: int = 0
    address: str | None = None
    gpus: float = 0.0
    retries: int = 1

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise EngineError(f"--engine must be one of {', '.join(ENGINES)}, got {self.name!r}")
        if self.workers < 0 or self.threads < 0 or self.retries < 0:
            raise EngineError("--workers, --threads and the retries must be >= 0")


@dataclass
class Failure:
    shard: int
    items: list
    error: str


def add_engine_arguments(p, workers_help: str) -> None:
    """The options of a tool whose work runs in shards (make_proposals.py, infer.py)."""
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: this machine (--workers processes); ray: actors on a Ray cluster")
    p.add_argument("--workers", type=int, default=None,
                   help=f"{workers_help} (local: 1 by default; ray: the cluster's CPUs, or GPUs, by default)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in each worker (default: local, this machine's cores shared out; ray, 1 each "
                        "on a cluster); the same --workers and --threads give the same results on both engines")
    p.add_argument("--ray-address", default=None,
                   help="the Ray cluster to join (default: RAY_ADDRESS, else one started on this machine)")


def engine_of(a, gpus: float = 0.0) -> Engine:
    """The :class:`Engine` the options of :func:`add_engine_arguments` ask for."""
    workers = a.workers if a.workers is not None else (1 if a.engine == "local" else 0)
    if a.ray_address and a.engine != "ray":
        raise EngineError("--ray-address is for --engine ray")
    return Engine(a.engine, workers, a.threads, a.ray_address, gpus)


def threads_each(engine: Engine, workers: int) -> int:
    """``engine.threads``, or this process's torch threads (the cores, or ``OMP_NUM_THREADS``) shared out."""
    import torch

    return engine.threads or max(1, torch.get_num_threads() // max(1, workers))


# -- in a worker process ----------------------------------------------------------------------------
_BUILT: dict[Hashable, Callable] = {}


def _worker(make_worker: Callable[[], Callable[[list], Any]], threads: int) -> Callable[[list], Any]:
    import torch

    torch.set_num_threads(threads)
    if make_worker not in _BUILT:
        _BUILT[make_worker] = make_worker()
    return _BUILT[make_worker]


def _pool_run(make_worker: Callable, threads: int, items: list) -> Any:
    return _worker(make_worker, threads)(items)


def _built(make_worker: Callable, threads: int) -> bool:
    _worker(make_worker, threads)
    return True


def _die_with_parent() -> None:
    """Linux: this process is killed when its parent dies (a killed actor leaves no child behind)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child ends when its pipe to the actor closes
        pass


class ShardWorker:
    """A Ray actor: the worker function, built once, run on one shard at a time in a child process
    of the actor's. In the actor's own process Ray's threads run beside the work, and their calls
    to libc's ``rand()`` move the sequence that OpenCV's Selective Search ranks its boxes by
    (measured: one image in 12 came out in another order on each run); a forked child has none."""

    def __init__(self, make_worker: Callable, threads: int) -> None:
        self.make_worker, self.threads, self.pool = make_worker, threads, None
        self._start()

    def _start(self) -> None:
        self.pool = ProcessPoolExecutor(1, mp_context=get_context("fork"), initializer=_die_with_parent)
        self.pool.submit(_built, self.make_worker, self.threads).result()  # a recipe that fails, fails here

    def run(self, items: list) -> Any:
        try:
            return self.pool.submit(_pool_run, self.make_worker, self.threads, items).result()
        except BrokenProcessPool:  # the child died: a new one for the retry, and the error for Ray to retry
            self._start()
            raise


# -- in the driver ---------------------------------------------------------------------------------
def run_shards(make_worker: Callable, shards: Iterable[Shard], engine: Engine, done: Callable[[int, Any], None],
               progress: Callable[[], Any] | None = None) -> list[Failure]:
    """Run every shard on ``engine``, calling ``done(index, result)`` in this process as each
    shard comes back (in the order they finish). ``progress()`` makes the run's progress bar once
    the workers are up (its clock starts there, not before Ray's start-up); it advances by each
    finished shard's items. Returns the shards that failed on every try."""
    shards = list(shards)
    sizes = {i: len(items) for i, items in shards}
    bars = []

    def started() -> None:
        if progress is not None:
            bars.append(progress())

    def finished(i: int, result: Any) -> None:
        done(i, result)
        for bar in bars:
            bar.update(sizes[i])

    try:
        if not shards:
            started()
            return []
        if engine.name == "ray":
            from .ray_engine import run_on_ray

            return run_on_ray(make_worker, shards, engine, finished, started)
        started()
        workers = min(engine.workers or os.cpu_count() or 1, len(shards))
        threads = threads_each(engine, workers)
        if workers <= 1:
            return _in_process(make_worker, shards, engine.retries, threads, finished)
        return _in_pool(make_worker, shards, engine.retries, workers, threads, finished)
    finally:
        for bar in bars:
            bar.close()


class Attempts:
    """How often each shard has failed; a shard is tried again until it has failed ``retries + 1`` times."""

    def __init__(self, retries: int) -> None:
        self.retries, self.count, self.failures = retries, {}, []

    def failed(self, shard: Shard, error: BaseException | str) -> bool:
        """Record a failure of ``shard``; True when it is to be tried again."""
        self.count[shard[0]] = self.count.get(shard[0], 0) + 1
        if self.count[shard[0]] <= self.retries:
            return True
        self.give_up(shard, error)
        return False

    def give_up(self, shard: Shard, error: BaseException | str) -> None:
        """``shard`` failed for the last time (its retries done, here or by the engine)."""
        text = (error if isinstance(error, str) else f"{type(error).__name__}: {error}").strip()
        self.failures.append(Failure(shard[0], shard[1], text.splitlines()[-1] if text else "failed"))


def _in_process(make_worker: Callable, shards: list[Shard], retries: int, threads: int,
                done: Callable[[int, Any], None]) -> list[Failure]:
    work, attempts = _worker(make_worker, threads), Attempts(retries)
    queue = deque(shards)
    while queue:
        shard = queue.popleft()
        try:
            result = work(shard[1])
        except Exception as e:  # noqa: BLE001 - one shard's error is reported with its images, the run goes on
            if attempts.failed(shard, e):
                queue.appendleft(shard)
            continue
        done(shard[0], result)
    return attempts.failures


def _in_pool(make_worker: Callable, shards: list[Shard], retries: int, workers: int, threads: int,
             done: Callable[[int, Any], None]) -> list[Failure]:
    """``workers`` forked processes, each a pool of its own with one shard in flight, so that a
    process that dies is known by its shard: that one is tried again, in a new process."""
    attempts, queue = Attempts(retries), deque(shards)
    slots: list[ProcessPoolExecutor | None] = [None] * workers
    running: dict = {}  # future -> (slot, shard)
    try:
        while queue or running:
            for k in range(workers):
                if queue and k not in {slot for slot, _ in running.values()}:
                    if slots[k] is None:
                        slots[k] = ProcessPoolExecutor(1, mp_context=get_context("fork"), initializer=_built,
                                                       initargs=(make_worker, threads))
                    shard = queue.popleft()
                    running[slots[k].submit(_pool_run, make_worker, threads, shard[1])] = (k, shard)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                k, shard = running.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # noqa: BLE001 - as in _in_process; BrokenProcessPool: the process died
                    if isinstance(e, BrokenProcessPool):
                        slots[k].shutdown(wait=False)
                        slots[k] = None
                        e = "its worker process died"
                    if attempts.failed(shard, e):
                        queue.appendleft(shard)
                    continue
                done(shard[0], result)
    finally:
        for pool in slots:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    return attempts.failures
