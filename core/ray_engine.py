"""The ``ray`` engine of :mod:`core.engines`: shards handed to Ray actors, one shard in flight an actor.

Ray runs embedded on this machine (``ray.init(address="local")``, started for the run and stopped
after it) or joins a running cluster (``--ray-address`` or ``RAY_ADDRESS``; every node needs this
package installed and the images at the same path). An actor that dies is restarted by Ray and
its shard run again (``max_restarts`` / ``max_task_retries``,
https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html); a Python error in a shard is
retried once. An actor that dies again is gone for good: its shard is named as failed and a new
actor takes its place, so the rest of the run goes on.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from typing import Any

from .engines import Attempts, Engine, EngineError, Failure, Shard, ShardWorker, threads_each


def _address(engine: Engine) -> str:
    return engine.address or os.environ.get("RAY_ADDRESS") or "local"


def _connect(engine: Engine):
    try:
        import ray
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.40')") from None
    address = _address(engine)
    options = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address == "local":  # a cluster of this machine for this run: as many CPUs as the workers ask for
        workers = engine.workers or os.cpu_count() or 1
        options["num_cpus"] = max(os.cpu_count() or 1, workers * threads_each(engine, workers))
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        auth = "" if os.environ.get("RAY_AUTH_MODE") else (
            " (a cluster made by `ray start` asks for its token: export RAY_AUTH_MODE=token here too, the token in "
            "~/.ray/auth_token or RAY_AUTH_TOKEN)")
        raise EngineError(f"Ray cluster at {address}: {str(e).strip().splitlines()[0]}{auth}; start one with "
                          "`ray start --head` or give another --ray-address") from None
    return ray


def _sizes(ray, engine: Engine, shards: int, embedded: bool) -> tuple[int, int, float]:
    """(actors, threads each, GPUs each): ``engine.workers``, or as many as the cluster has CPUs
    (GPUs, where the actors ask for them; ``gpus=-1``: one each if the cluster has any)."""
    resources = ray.cluster_resources()
    gpus = (1.0 if resources.get("GPU", 0) >= 1 else 0.0) if engine.gpus < 0 else engine.gpus
    if gpus and resources.get("GPU", 0) < gpus:
        raise EngineError(f"the Ray cluster has {resources.get('GPU', 0):g} GPU(s), an actor asks for {gpus:g}; "
                          "run with --device cpu or join a cluster with GPUs")
    if engine.workers:
        workers = engine.workers
    elif gpus:
        workers = int(resources["GPU"] // gpus)
    else:
        workers = int(resources.get("CPU", 1) // (engine.threads or 1))
    threads = engine.threads or (threads_each(engine, workers) if embedded else 1)
    return max(1, min(workers, shards)), threads, gpus


def run_on_ray(make_worker: Callable, shards: list[Shard], engine: Engine, done: Callable[[int, Any], None],
               started: Callable[[], None]) -> list[Failure]:
    ray = _connect(engine)
    try:
        workers, threads, gpus = _sizes(ray, engine, len(shards), _address(engine) == "local")
        # a dead actor is restarted ``retries`` times, and Ray runs its shard again on the restarted
        # one (max_task_retries=-1: as often as it restarts; a bounded count is used up by calls
        # that reach it while it is still restarting); a Python error is retried here, by Attempts
        actor = ray.remote(ShardWorker).options(num_cpus=threads, num_gpus=gpus, max_restarts=engine.retries,
                                                max_task_retries=-1)
        # the recipe goes inline with each actor (it is small): arguments held in the object store
        # cannot always be had again when a restart needs them (ray-project/ray#53727)
        actors = [actor.remote(make_worker, threads) for _ in range(workers)]
        ray.get([a.__ray_ready__.remote() for a in actors])  # started: what follows is the work
        started()
        attempts, queue, running, idle = Attempts(engine.retries), deque(shards), {}, list(actors)
        replaced = 0
        while queue or running:
            while queue and idle:
                a, shard = idle.pop(), queue.popleft()
                running[a.run.remote(shard[1])] = (a, shard)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            a, shard = running.pop(ref)
            try:
                done(shard[0], ray.get(ref))
            except ray.exceptions.ActorDiedError as e:  # restarts used up: a new actor for the rest
                attempts.give_up(shard, e)
                replaced += 1
                if replaced > workers * (engine.retries + 1):
                    raise EngineError(f"Ray actors died {replaced} times; the last: {e}") from None
                a = actor.remote(make_worker, threads)
            except ray.exceptions.RayError as e:  # a Python error in the shard (RayTaskError), or the like
                if attempts.failed(shard, e):
                    queue.appendleft(shard)
            idle.append(a)
        return attempts.failures
    finally:
        ray.shutdown()
