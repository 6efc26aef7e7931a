"""tools/export.py: TorchScript and ONNX (run in onnxruntime) give the eager model's detections."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from detector.data.toy import make_toy_ilsvrc
from detector.export import parity
from detector.model import googlenet_faster_rcnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})


@pytest.fixture(scope="module")
def final(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    root = make_toy_ilsvrc(str(base / "ilsvrc"), n_train=4, n_val=4, n_negative=0, cls_per_class=1)
    out = run([os.path.join(ROOT, "tools", "train_det.py"), "configs/toy_det.yaml", f"data.root={root}",
               "data.toy=false", f"work_dir={base}", "model.weights=null", "model.head=c4", "data.workers=0",
               "data.scales=[96]", "data.test_scale=112", "data.max_size=160", "batch_size=2", "max_steps=2",
               "progress=false", "model.rpn_post_nms_top_n_test=20", "model.box_score_thresh=0.0"])
    assert out.returncode == 0, out.stderr[-2000:]
    return str(base / "googlenet_toy_det" / "model_0" / "model_final.pth")


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_the_eager_model(final, tmp_path, fmt):
    out = run([os.path.join(ROOT, "tools", "export.py"), final, "--format", fmt, "--out", str(tmp_path / "m")])
    assert out.returncode == 0, out.stderr[-2000:]
    # 4 val images of several sizes, one traced: the size is not baked in
    assert "check on 4 images" in out.stdout
    n = int(out.stdout.split("images, ")[1].split(" detections")[0])
    assert n >= 20  # an untrained head with score threshold 0 detects plenty: a real comparison
    meta = json.load(open(tmp_path / "m.json"))
    assert meta["class_names"][0] == "circle" and meta["test_scale"] == 112 and meta["format"] == fmt


def test_parity_reports_a_disagreement():
    model = googlenet_faster_rcnn(3, head="c4", rpn_post_nms_top_n_test=10, box_score_thresh=0.0).eval()
    image = torch.rand(3, 96, 112)

    def shifted(img):
        with torch.inference_mode():
            out = model([img])[0]
        return out["boxes"].numpy() + 0.5, out["scores"].numpy(), out["labels"].numpy()

    check = parity(model, shifted, [image])
    assert not check["ok"] and "boxes differ by up to 0.5" in check["problem"]

    def fewer(img):
        b, s, lab = shifted(img)
        return b[1:], s[1:], lab[1:]

    assert "detections" in parity(model, fewer, [image])["problem"]

    def same(img):
        b, s, lab = shifted(img)
        return b - 0.5, s, lab

    assert parity(model, same, [image])["ok"]
