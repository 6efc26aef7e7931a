"""tools/train_det.py end to end on a tiny miniature ILSVRC (CPU): training, resume, DDP, overfitting,
bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from detector.data.toy import make_toy_ilsvrc
from detector.final import load_final
from detector.model import googlenet_faster_rcnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "train_det.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_toy_ilsvrc(str(tmp_path_factory.mktemp("d") / "ilsvrc"), n_train=8, n_val=4, n_negative=4,
                           cls_per_class=1)
    return root


def tiny(toy: str, work: str, *extra: str) -> list[str]:
    return [TOOL, "configs/toy_det.yaml", f"data.root={toy}", "data.toy=false", f"work_dir={work}",
            "model.weights=null",
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
    # the saved weights are the model its saved config describes (the head, the MLP's width ...):
    # load_final rebuilds it from that config and loads them strictly
    model, _ = load_final(str(member / "model_final.pth"))
    assert model.roi_heads.box_predictor.cls_score.out_features == 11
    assert (member / "checkpoint_00000003.pth").exists() and (member / "log.jsonl").exists()
    # the same command again: nothing retrained, the file untouched; another config: a clear error
    stamp = os.stat(member / "model_final.pth").st_mtime_ns
    again = run(tiny(toy, str(tmp_path), "max_steps=3", "model_index=2"))
    assert again.returncode == 0 and "already trained" in again.stderr
    assert os.stat(member / "model_final.pth").st_mtime_ns == stamp
    other = run(tiny(toy, str(tmp_path), "max_steps=3", "model_index=2", "optim.lr=0.5"))
    assert other.returncode == 2 and "optim.lr" in other.stderr and len(other.stderr.strip().splitlines()) == 1


def test_missing_data_is_one_line_exit_2(tmp_path):
    out = run([TOOL, "configs/toy_det.yaml", f"data.root={tmp_path / 'none'}", "data.toy=false",
               f"work_dir={tmp_path}"])  # not the clone's work_dirs, where a trained member may already be
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


@pytest.mark.parametrize("head", ["c4", "fpn"])
def test_every_trainable_parameter_gets_a_gradient(head):
    """A trainable parameter that no loss reaches breaks DDP's gradient reduction (silently, on
    the first step): every one must get a gradient."""
    model = googlenet_faster_rcnn(3, head=head, rpn_post_nms_top_n_train=32, box_batch_size_per_image=16).train()
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([2])} for _ in images]
    sum(model(images, targets).values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


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

    dets = json.load(open(tmp_path / "out" / "detections.json"))  # COCO results, image_id in input order
    assert "4 image(s)" in out.stdout and "broken.jpg" in out.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 4
    assert dets and {"image_id", "category_id", "category_name", "bbox", "score", "file_name"} <= set(dets[0])
    assert {d["image_id"] for d in dets} <= {1, 2, 3, 4} and all(d["score"] >= 0 for d in dets)
    missing = run([os.path.join(ROOT, "tools", "infer.py"), str(tmp_path / "nope.pth"), images, "--out", str(tmp_path)])
    assert missing.returncode == 2 and "nope.pth" in missing.stderr


def test_killed_then_resumed_equals_uninterrupted(toy, tmp_path):
    """With the weights' moving average on: it is checkpointed and resumed with the model, and it
    is what model_final.pth holds."""
    import signal
    import time

    common = ("max_steps=4", "checkpoint_every_steps=1", "keep_checkpoints=5", "eval_every=100", "optim.ema_decay=0.9")
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
    for k in a["average"]:
        assert torch.equal(a["average"][k], b["average"][k]), k
    final = torch.load(work / "googlenet_toy_det" / "model_0" / "model_final.pth", weights_only=True)["model"]
    assert int(b["average"]["averaged.n_averaged"]) == 4
    assert all(torch.equal(final[k], b["average"][f"averaged.module.{k}"]) for k in final)
    moved = [k for k in final if final[k].is_floating_point() and not torch.equal(final[k], b["model"][k])]
    assert len(moved) > len(final) // 2  # the average, not the last step's weights
    bad = run(tiny(toy, str(tmp_path / "bad"), "max_steps=1", "optim.ema_decay=1.5"))
    assert bad.returncode == 2 and "optim.ema_decay" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


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


def _same_layout_coco(root: str) -> str:
    """4 images of one size with the same boxes but other pixels and labels: every image then has
    the same number of anchors and regions to sample, so a process's mean loss over its 2 images
    averaged over 2 processes is the mean over all 4 (torchvision's losses are per-batch means)."""
    import json

    import numpy as np
    from PIL import Image

    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    boxes = [[8, 10, 40, 36], [50, 44, 38, 40]]  # xywh
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(4):
        img = (rng.random((96, 96, 3)) * 80).astype(np.uint8)
        for j, (x, y, w, h) in enumerate(boxes):
            img[y:y + h, x:x + w] = (60 * ((i + j) % 4) + 40, 200 - 40 * i, 30 * j + 100)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + (i + j) % 3, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
        Image.fromarray(img).save(os.path.join(root, "train", f"{i}.png"))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 96, "height": 96})
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    with open(os.path.join(root, "annotations", "instances_train.json"), "w") as f:
        json.dump({"images": images, "annotations": anns,
                   "categories": [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]}, f)
    return root


def test_one_ddp_step_with_two_processes_equals_one_process(tmp_path):
    root = _same_layout_coco(str(tmp_path / "coco"))
    # sample every anchor and region (no random subsets, which each process would draw differently)
    args = ["configs/coco_det.yaml", f"data.root={root}", "data.train_split=train", "data.val_split=train",
            "model.weights=null", "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=96",
            "data.flip=0.0", "data.photometric=0.0", "batch_size=4", "epochs=1", "max_steps=1", "progress=false",
            "model.rpn_post_nms_top_n_train=16", "model.rpn_batch_size_per_image=100000",
            "model.box_batch_size_per_image=100000", "model.rpn_post_nms_top_n_test=8", "optim.warmup_iters=0",
            "optim.lr=0.01", "device=cpu"]  # gloo on the CPU, also where a GPU is (one GPU takes one process)
    env = {**os.environ, "PYTHONPATH": ROOT}
    one = subprocess.run([sys.executable, TOOL, *args, f"work_dir={tmp_path / 'one'}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", TOOL,
                          *args, f"work_dir={tmp_path / 'two'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    from core.config import load_config
    from core.seeding import seed_everything
    from detector.config import DetConfig, build_model

    seed_everything(0)  # the start both runs had (member 0's seed), to see that the step moved it
    before = build_model(load_config(DetConfig, os.path.join(ROOT, args[0]), args[1:]).model, 3).state_dict()
    name = "googlenet_coco_det"
    a = torch.load(tmp_path / "one" / name / "model_0" / "model_final.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / name / "model_0" / "model_final.pth", weights_only=True)["model"]
    moved = 0
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
        moved += int(not torch.equal(a[k], before[k]))
    assert moved > 10  # the step changed the weights: not a comparison of two untouched models
