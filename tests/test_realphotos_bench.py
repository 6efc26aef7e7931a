"""``tools/benchmark.py realphotos``'s parts: a torchvision peer trains and is scored through the
same pipeline as ours (``detector.train.run`` with a builder, COCO AP as the training metric), and
the table marks each model's better recipe and names a run that failed."""

from __future__ import annotations

import os
import sys

import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

from core.config import load_config
from detector import train
from detector.config import DetConfig
from detector.data.toy import make_toy_ilsvrc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from benchmarks.realphotos import (  # noqa: E402
    DRAW_HEIGHT,
    TorchvisionPeer,
    detections_drawn,
    peer_builder,
    print_table,
    seconds_per_step,
)


def test_a_torchvision_peer_trains_on_the_pipelines_images_and_is_scored_by_coco_ap(tmp_path):
    root = make_toy_ilsvrc(str(tmp_path / "ilsvrc"), n_train=4, n_val=4, n_negative=0, num_classes=2,
                            cls_per_class=1)
    cfg = load_config(DetConfig, os.path.join(ROOT, "configs", "toy_det.yaml"), [
        f"data.root={root}", "data.toy=false", f"work_dir={tmp_path / 'work'}", "data.workers=0",
        "data.scales=[96]", "data.test_scale=96", "data.max_size=160", "batch_size=2", "epochs=1", "max_steps=2",
        "progress=false", "eval_metric=coco"])
    built: list[TorchvisionPeer] = []
    metrics = train.run(cfg, lambda n: built.append(peer_builder(fasterrcnn_mobilenet_v3_large_fpn)(n)) or built[-1])
    assert {"AP", "AP50", "AP75"} <= set(metrics["coco"]) and metrics["map"] == metrics["coco"]["AP"]
    peer = built[0]
    assert peer.net.roi_heads.box_predictor.cls_score.out_features == 3  # two classes and background
    batch, _ = peer.net.transform([torch.rand(3, 96, 130)])
    assert batch.image_sizes == [(96, 130)]  # the pipeline's resize stands: torchvision's own is off
    drawn = detections_drawn(cfg, peer_builder(fasterrcnn_mobilenet_v3_large_fpn), 2)  # the saved weights, reloaded
    assert len(drawn) == 2 and all(d.shape[0] == DRAW_HEIGHT and d.shape[2] == 3 for d in drawn)


def test_the_table_marks_each_models_better_recipe_and_names_a_failed_run(capsys):
    row = dict(steps=10, s_per_step=1.0, wall_min=1.0, epochs=1, batch=2, data="photos train")
    print_table([{"model": "peer", "recipe": "sgd", "AP": 0.1, "AP50": 0.3, "AP75": 0.05, **row},
                 {"model": "peer", "recipe": "ours", "AP": 0.2, "AP50": 0.4, "AP75": 0.1, **row},
                 {"model": "other", "recipe": "sgd", "error": "loss is nan at epoch 1"}])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:2] for ln in lines[3:5]] == [["peer", "sgd"], ["peer", "ours*"]]
    assert "20.0" in lines[4] and "failed: loss is nan" in lines[5]


def test_a_step_is_timed_over_the_last_start_of_the_log():
    # a run stopped after 3 steps and started again an hour later over the same log (slower then),
    # stopped again and resumed from its checkpoint at step 1
    times = [(1, 0.0), (2, 9.0), (3, 18.0), (1, 3600.0), (2, 3601.0), (3, 3603.0), (2, 9000.0), (3, 9001.0),
             (4, 9004.0)]
    records = [{"global_step": g, "time": t} for g, t in times]
    assert seconds_per_step(records) == (1 + 3) / 2
    assert seconds_per_step(records[:3]) == 9.0
