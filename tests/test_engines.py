"""Shards on the two engines (core/engines.py, core/ray_engine.py): retries, failures named with
their images, a dying worker; and tools/infer.py on tiny COCO, whose output on a local Ray of 2
CPUs equals the local engine's byte for byte, after an actor is killed and after the whole run is
killed and started again. (make_proposals.py on Ray: tests/test_proposals.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial

import pytest

from core.engines import Engine, run_shards
from core.errors import ShardsFailed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(ROOT, "tools", "infer.py")
PHOTOS = os.path.join(os.path.dirname(ROOT), "shared", "data", "tiny_coco", "val2017")
ray = pytest.importorskip("ray", reason="the ray engine's tests need pip install -e '.[ray]' (make test installs it)")


# -- the engines on a worker that fails as told ----------------------------------------------------
@dataclass(frozen=True)
class Flaky:
    """Doubles numbers; ``"once"`` raises the first time it is met, ``"always"`` every time, and
    ``"die"`` kills its worker process the first time (``folder`` remembers what happened)."""

    folder: str

    def __call__(self):
        return partial(_flaky, self.folder)


def _flaky(folder: str, items: list) -> list:
    for x in items:
        mark = os.path.join(folder, f"{x}.seen")
        first = not os.path.exists(mark)
        open(mark, "a").close()
        if x == "always" or (x == "once" and first):
            raise ValueError(f"bad item {x}")
        if x == "die" and first:
            os._exit(1)
    return [2 * x if isinstance(x, int) else x for x in items]


SHARDS = [(0, [1, 2]), (1, [3, "once"]), (2, [4, "always"]), (3, [5, "die"]), (4, [6])]


def run_flaky(engine: Engine, folder: str, shards=SHARDS) -> tuple[dict, list]:
    results = {}
    failures = run_shards(Flaky(folder), shards, engine, lambda i, r: results.__setitem__(i, r))
    return results, failures


def check_flaky(results: dict, failures: list) -> None:
    assert results == {0: [2, 4], 1: [6, "once"], 3: [10, "die"], 4: [12]}  # retried once, and done
    (failed,) = failures  # failed on both tries: named, with its items and the error, never dropped
    assert failed.shard == 2 and failed.items == [4, "always"] and failed.error.endswith("ValueError: bad item always")


def test_local_processes_retry_a_shard_once_and_name_one_that_fails_twice(tmp_path):
    check_flaky(*run_flaky(Engine("local", workers=2, threads=1), str(tmp_path)))
    assert (tmp_path / "die.seen").exists()  # its process died, and a new pool ran it again
    in_process = tmp_path / "in_process"
    in_process.mkdir()
    results, failures = run_flaky(Engine("local", workers=1), str(in_process), SHARDS[:3])
    assert results == {0: [2, 4], 1: [6, "once"]} and [f.shard for f in failures] == [2]
    message = str(ShardsFailed("the images", failures, 3))
    assert message.startswith("1 of 3 shards of the images failed twice") and "shard 2 (4, always)" in message


def test_ray_actors_retry_a_shard_once_and_name_one_that_fails_twice(tmp_path, monkeypatch):
    # this module, importable in Ray's worker processes (they inherit the environment of the Ray
    # that the engine starts on this machine)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(__file__), ROOT]))
    check_flaky(*run_flaky(Engine("ray", workers=2, threads=1), str(tmp_path)))


# -- tools/infer.py on tiny COCO -----------------------------------------------------------------
needs_photos = pytest.mark.skipif(not os.path.isdir(PHOTOS),
                                  reason="../shared/data/tiny_coco is not beside the checkout")


def infer_args(member: str, out: str, *engine: str) -> list[str]:
    return [sys.executable, INFER, member, os.path.join(PHOTOS, "*.jpg"), "--out", out, "--score", "0",
            "--shard", "2", "--workers", "2", "--threads", "1", *engine]


def start(args: list[str]) -> subprocess.Popen:
    """A run in a session of its own, so that what Ray starts for it can be stopped with it."""
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT, "PROGRESS_SECONDS": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray's helpers of a killed run
        except ProcessLookupError:
            pass


def processes() -> dict[int, tuple[str, int]]:
    """pid -> (command line, parent pid) of this machine's processes."""
    found = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{d}/cmdline").read().replace("\0", " ").strip()
            ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(d)] = (cmd, ppid)
    return found


def shards_written(out: str) -> int:
    parts = os.path.join(out, "detections.json.parts")
    return len([f for f in os.listdir(parts) if f.startswith("shard_")]) if os.path.isdir(parts) else 0


def wait_for(cond, proc: subprocess.Popen, seconds: float = 120) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def local_out(members, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("local"))
    proc = start(infer_args(members.paths[0], out))
    _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    return out


def same_output(a: str, b: str) -> None:
    """Identical detections.json and drawn images; no parts left."""
    dets = open(os.path.join(a, "detections.json"), "rb").read()
    assert dets == open(os.path.join(b, "detections.json"), "rb").read() and len(json.loads(dets)) > 20
    pngs = sorted(f for f in os.listdir(a) if f.endswith(".png"))
    assert len(pngs) == 50 and pngs == sorted(f for f in os.listdir(b) if f.endswith(".png"))
    for f in pngs:
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read(), f
    assert not os.path.exists(os.path.join(b, "detections.json.parts"))


@needs_photos
def test_ray_with_an_actor_killed_mid_run_writes_what_the_local_engine_writes(members, local_out, tmp_path):
    out = str(tmp_path / "ray")
    proc = start(infer_args(members.paths[0], out, "--engine", "ray"))
    ps: dict = {}

    def an_actor_at_work() -> bool:  # the actor's own process, not the child it runs shards in
        ps.update(processes())
        return shards_written(out) >= 1 and any(cmd.startswith("ray::ShardWorker.run") for cmd, _ in ps.values())

    assert wait_for(an_actor_at_work, proc), "the run ended before an actor could be killed"
    victim = next(p for p, (cmd, ppid) in ps.items()  # one running a shard (its title says so)
                  if cmd.startswith("ray::ShardWorker.run") and not ps.get(ppid, ("",))[0].startswith("ray::"))
    os.kill(victim, signal.SIGKILL)
    _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    same_output(local_out, out)
    assert not [p for p, (cmd, _) in processes().items() if cmd.startswith("ray::ShardWorker")]  # none left behind


@needs_photos
def test_a_killed_ray_run_resumes_from_its_finished_shards(members, local_out, tmp_path):
    out = str(tmp_path / "ray")
    proc = start(infer_args(members.paths[0], out, "--engine", "ray"))
    assert wait_for(lambda: shards_written(out) >= 3, proc), "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    finish(proc)
    kept = shards_written(out)
    assert kept >= 3 and not os.path.exists(os.path.join(out, "detections.json"))
    again = start(infer_args(members.paths[0], out, "--engine", "ray"))
    _, err = finish(again)
    assert again.returncode == 0, err[-2000:]
    first = next(line for line in err.splitlines() if line.startswith("detect"))  # the progress starts where it was
    assert int(first.split("img ")[1].split("/")[0]) >= 2 * kept, first
    same_output(local_out, out)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@needs_photos
def test_a_run_joins_a_cluster_started_with_ray_start(members, local_out, tmp_path):
    """``ray start --head`` (token authentication on, as Ray >= 2.59 starts clusters), then the tool
    with ``--ray-address``: the same output as the local engine's."""
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "googlenet-det-test-token-0123456789abcdef"}
    head = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert wait_for(lambda: listening(port), head, 60), "ray start --head did not come up"
        out = str(tmp_path / "cluster")
        proc = subprocess.run(infer_args(members.paths[0], out, "--engine", "ray", "--ray-address",
                                         f"127.0.0.1:{port}"),
                              cwd=ROOT, env={**env, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        same_output(local_out, out)
    finally:
        head.send_signal(signal.SIGTERM)  # --block: stops the cluster's processes
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
