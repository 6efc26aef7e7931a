"""tools/train_det.py end to end on a tiny miniature ILSVRC (CPU). The overfitting, DDP and
resume tests of the detector issue are still to come."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from detector.data.toy import make_toy_ilsvrc
from detector.model import googlenet_faster_rcnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "train_det.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_toy_ilsvrc(str(tmp_path_factory.mktemp("d") / "ilsvrc"), n_train=8, n_val=4, n_negative=4,
                           cls_per_class=1)
    return root


def tiny(toy: str, work: str, *extra: str) -> list[str]:
    return [TOOL, "configs/toy_det.yaml", f"data.root={toy}", "data.toy=false", f"work_dir={work}", "model.weights=null",
            "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=160", "data.negatives=1.0",
            "batch_size=2", "epochs=1", "progress=false", "model.rpn_post_nms_top_n_train=32",
            "model.box_batch_size_per_image=16", "model.rpn_post_nms_top_n_test=16", *extra]


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})


def test_a_short_run_writes_the_final_model_with_its_config_and_classes(toy, tmp_path):
    out = run(tiny(toy, str(tmp_path), "max_steps=3", "model_index=2"))
    assert out.returncode == 0, out.stderr[-2000:]
    member = tmp_path / "googlenet_toy_det" / "model_2"
    final = torch.load(member / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["classes"][0] == "n90000001" and final["class_names"][0] == "circle"
    assert final["config"]["model_index"] == 2 and final["config"]["seed"] == 0
    assert 0.0 <= final["metrics"]["map"] <= 1.0 and "ilsvrc mAP" in out.stdout
    model = googlenet_faster_rcnn(10, head="c4", rpn_post_nms_top_n_test=16)
    model.load_state_dict(final["model"])  # the saved weights are the model's
    assert (member / "checkpoint_00000003.pth").exists() and (member / "log.jsonl").exists()


def test_missing_data_is_one_line_exit_2(tmp_path):
    out = run([TOOL, "configs/toy_det.yaml", f"data.root={tmp_path / 'none'}", "data.toy=false"])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.root=" in lines[0] and "none" in lines[0]


def test_non_finite_loss_stops_with_exit_3(toy, tmp_path):
    out = run(tiny(toy, str(tmp_path), "optim.lr=1e12", "optim.warmup_iters=0", "max_steps=6"))
    assert out.returncode == 3, out.stderr[-2000:]
    assert "loss is" in out.stderr and "lower optim.lr" in out.stderr


@pytest.mark.parametrize("head", ["c4", "fpn"])
def test_a_batch_of_negatives_only_trains(head):
    model = googlenet_faster_rcnn(3, head=head, rpn_post_nms_top_n_train=32, box_batch_size_per_image=16).train()
    images = [torch.rand(3, 80, 96), torch.rand(3, 96, 80)]
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_infer_draws_and_writes_detections(toy, tmp_path):
    assert run(tiny(toy, str(tmp_path), "max_steps=2", "model.box_score_thresh=0.0")).returncode == 0
    final = tmp_path / "googlenet_toy_det" / "model_0" / "model_final.pth"
    images = os.path.join(toy, "Data", "DET", "val")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    out = run([os.path.join(ROOT, "tools", "infer.py"), str(final), images, str(bad), "--out", str(tmp_path / "out"),
               "--score", "0.0"])
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    dets = json.load(open(tmp_path / "out" / "detections.json"))
    assert len(dets) == 4 and "broken.jpg" in out.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    first = next(iter(dets.values()))
    assert first and {"box_xyxy", "score", "label", "name"} <= set(first[0])
    missing = run([os.path.join(ROOT, "tools", "infer.py"), str(tmp_path / "nope.pth"), images, "--out", str(tmp_path)])
    assert missing.returncode == 2 and "nope.pth" in missing.stderr


def test_killed_then_resumed_equals_uninterrupted(toy, tmp_path):
    import signal
    import time

    common = ("max_steps=4", "checkpoint_every_steps=1", "keep_checkpoints=5", "eval_every=100")
    assert run(tiny(toy, str(tmp_path / "ref"), *common)).returncode == 0
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *tiny(toy, str(work), *common)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": ROOT})
    target = work / "googlenet_toy_det" / "model_0" / "checkpoint_00000002.pth"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.exists() and not (work / "googlenet_toy_det" / "model_0" / "model_final.pth").exists()
    out = run(tiny(toy, str(work), *common))
    assert out.returncode == 0 and "resuming from" in out.stderr
    a = torch.load(tmp_path / "ref" / "googlenet_toy_det" / "model_0" / "checkpoint_00000004.pth", weights_only=True)
    b = torch.load(work / "googlenet_toy_det" / "model_0" / "checkpoint_00000004.pth", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_ilsvrc_config_on_the_miniature_says_how_to_make_val1(toy, tmp_path):
    """configs/ilsvrc_det.yaml trains on train + val1: pointed at a root without the split files,
    it says how to make them; with them made, it trains."""
    import shutil

    root = str(tmp_path / "ilsvrc")
    shutil.copytree(toy, root)  # the split files are written into it: keep the shared fixture as it is
    args = [TOOL, "configs/ilsvrc_det.yaml", f"data.root={root}", f"work_dir={tmp_path}", "model.weights=null",
            "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=160", "batch_size=2",
            "max_steps=1", "progress=false", "model.rpn_post_nms_top_n_train=32", "model.box_batch_size_per_image=16",
            "model.rpn_post_nms_top_n_test=16", "data.blacklist=det_validation_blacklist.txt"]
    out = run(args)
    assert out.returncode == 2 and "make_val_split.py" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert run([os.path.join(ROOT, "tools", "make_val_split.py"), root]).returncode == 0
    out = run(args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "googlenet_ilsvrc_det" / "model_0" / "model_final.pth").exists()
