"""Several runs at once (core.jobs, train_det.py --ensemble N --jobs J) and what they share: the
miniature that members started together both make (core.atomic.publish_dir)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys

import pytest

from core.atomic import publish_dir
from core.config import ConfigError
from core.jobs import Job, job_env, run_jobs, threads_per_job, visible_gpus
from detector.data.toy import make_toy_ilsvrc
from detector.train import train_ensemble

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_jobs_run_at_once_with_their_own_threads_and_labelled_output(tmp_path):
    # each run waits for the other's file: only runs that are alive together both finish
    wait = ("import os, sys, time; open(sys.argv[1], 'w').close(); t = time.time()\n"
            "while not os.path.exists(sys.argv[2]) and time.time() - t < 20: time.sleep(0.05)\n"
            "print('threads', os.environ['OMP_NUM_THREADS'], 'saw', os.path.exists(sys.argv[2]))")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    lines = []
    codes = run_jobs([Job("model_0", [*_py(wait), a, b]), Job("model_1", [*_py(wait), b, a])], 2, threads=1,
                     out=lines.append)
    assert codes == {"model_0": 0, "model_1": 0}
    assert sorted(lines) == ["[model_0] threads 1 saw True", "[model_1] threads 1 saw True"]


def test_after_a_failed_run_no_new_one_starts(tmp_path):
    marker = tmp_path / "ran"
    jobs = [Job("bad", _py("import sys; print('boom'); sys.exit(3)")),
            Job("later", _py(f"open({str(marker)!r}, 'w').close()"))]
    lines = []
    assert run_jobs(jobs, 2, threads=1, out=lines.append) in ({"bad": 3}, {"bad": 3, "later": 0})
    lines.clear()
    marker.unlink(missing_ok=True)
    # one at a time, the failure is seen before the next starts
    assert run_jobs(jobs, 1, threads=1, out=lines.append) == {"bad": 3}
    assert not marker.exists()


def test_each_slot_gets_its_share_of_cores_and_one_gpu():
    assert threads_per_job(2, cpus=2) == 1 and threads_per_job(2, cpus=16) == 8 and threads_per_job(4, cpus=2) == 1
    env = job_env({"PATH": "/bin"}, slot=3, threads=4, gpus=["0", "2"])
    assert env["OMP_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == "2" and env["PATH"] == "/bin"
    assert "CUDA_VISIBLE_DEVICES" not in job_env({}, slot=0, threads=1, gpus=[])
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1, 3"}) == ["1", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def test_the_ensemble_sets_model_index_itself():
    with pytest.raises(ConfigError, match="model_index"):
        train_ensemble(os.path.join(ROOT, "configs", "toy_det.yaml"), ["model_index=2"], 2, 2)


def test_publish_dir_keeps_the_first_of_two_identical_folders_and_refuses_another(tmp_path):
    root = tmp_path / "data"
    for name, content in (("one", "same"), ("two", "same")):
        tmp = tmp_path / name
        tmp.mkdir()
        (tmp / "marker").write_text(content)
        publish_dir(str(tmp), str(root), lambda: (root / "marker").read_text() == "same")
        assert not tmp.exists() and (root / "marker").read_text() == "same"
    other = tmp_path / "three"
    other.mkdir()
    (other / "marker").write_text("different")
    with pytest.raises(OSError):
        publish_dir(str(other), str(root), lambda: (root / "marker").read_text() == "different")


def _make(root: str) -> str:
    return make_toy_ilsvrc(root, n_train=6, n_val=3, n_negative=1, cls_per_class=2)


def test_members_started_together_both_make_the_miniature_without_error(tmp_path):
    root = str(tmp_path / "toy_ilsvrc")
    with mp.get_context("spawn").Pool(2) as pool:
        assert pool.map(_make, [root, root]) == [root, root]
    with open(os.path.join(root, "toy_ilsvrc.json")) as f:
        assert json.load(f)["n_train"] == 6
    assert [p for p in os.listdir(tmp_path) if ".tmp" in p] == []  # the second copy is gone
