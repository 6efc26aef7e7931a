"""``realphotos``: detectors trained from scratch on the same real photos, side by side.

Ours (``configs/scratch_det.yaml``, the FPN and the C4 head) and torchvision's
``fasterrcnn_resnet50_fpn`` and ``fasterrcnn_mobilenet_v3_large_fpn`` (random weights, every layer
and BatchNorm trained) go through one pipeline, ``detector.train.run``: the same photos, data
order, augmentation and input sizes (the config's; torchvision's own resize is replaced by the
pipeline's, as ours is), the same epochs and batch, scored by COCO AP on the val split. Each peer
trains twice, with torchvision's detection-reference recipe (SGD, momentum 0.9, 0.02 for 16 images
scaled to the batch, no clipping) and with ours (the config's AdamW, clipping and schedule), and its
better run counts. Ours keeps its test-time box refinement and voting (the config's); the peers
detect as torchvision's models do. The data and budget are the config's and the command line's
``key=value`` overrides (``epochs=18 optim.milestones=[15]``, ``data.root=...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable

import cv2
import numpy as np
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn

from core.atomic import write_bytes_atomic, write_json_atomic
from core.config import load_config
from detector.config import DetConfig
from detector.model import NoResizeTransform

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "scratch_det.yaml")
# torchvision's references/detection recipe, at the config's batch through lr_reference_batch
SGD = ["optim.name=sgd", "optim.lr=0.02", "optim.lr_reference_batch=16", "optim.momentum=0.9", "optim.grad_clip=null"]
# --models choice -> (its name in the table, its config overrides, torchvision's builder or None for ours)
MODELS = {"ours-fpn": ("ours fpn (scratch_det.yaml)", ["model.head=fpn"], None),
          "ours-c4": ("ours c4 (scratch_det.yaml, model.head=c4)", ["model.head=c4"], None),
          "r50-fpn": ("torchvision fasterrcnn_resnet50_fpn", [], fasterrcnn_resnet50_fpn),
          "mnv3-fpn": ("torchvision fasterrcnn_mobilenet_v3_large_fpn", [], fasterrcnn_mobilenet_v3_large_fpn)}
DRAW_SCORE, DRAW_HEIGHT = 0.5, 240


class TorchvisionPeer(nn.Module):
    """A torchvision detector as ``detector.train`` and ``Predictor`` call one: ``(images, targets,
    proposals)`` (proposals unused: it makes its own), ``proposal_source``, and a ``backbone_layout``
    that names the builder (its ``model_final.pth`` is for this benchmark: ``load_final`` cannot
    rebuild it)."""

    proposal_source = "rpn"

    def __init__(self, net: nn.Module, builder: str) -> None:
        super().__init__()
        self.net = net
        self.backbone_layout = {"torchvision": builder}

    def forward(self, images, targets=None, proposals=None):
        return self.net(images, targets)


def peer_builder(build) -> Callable[[int], nn.Module]:
    def make(num_classes: int) -> nn.Module:
        net = build(weights=None, weights_backbone=None, num_classes=num_classes + 1)  # no download, all trained
        t = net.transform  # the pipeline has resized each image once already, as for ours
        net.transform = NoResizeTransform(min_size=1, max_size=1 << 30, image_mean=t.image_mean, image_std=t.image_std)
        return TorchvisionPeer(net, build.__name__)

    return make


def add_parser(sub) -> None:
    c = sub.add_parser("realphotos", help="ours and torchvision's detectors from scratch on real photos, one budget")
    c.add_argument("overrides", nargs="*", help="key=value for configs/scratch_det.yaml (data, epochs, batch_size)")
    c.add_argument("--models", nargs="+", choices=tuple(MODELS), default=list(MODELS))
    c.add_argument("--work", help="folder for the runs (default: a temporary one); a finished run there is reused")
    c.add_argument("--json", help="write the rows to this file")
    c.add_argument("--draw", type=int, default=4, metavar="N", help="draw each model's detections on N val photos")
    c.add_argument("--picture", help="where --draw writes (default: realphotos.jpg in the work folder)")
    # batch .. warmup: unused here, read by the checks every benchmark shares
    c.set_defaults(batch=1, size=320, repeats=1, warmup=1, run=run, device="auto", allocator="tuned")


def runs(chosen: list[str]) -> list[tuple[str, str, list[str], object]]:
    """``(model, recipe, overrides, builder or None)`` for each run, in the order they train."""
    out = []
    for key in chosen:
        name, overrides, peer = MODELS[key]
        if peer is None:
            out.append((name, "ours", overrides, None))
        else:
            build = peer_builder(peer)
            out += [(name, "sgd", [*overrides, *SGD], build), (name, "ours", overrides, build)]
    return out


def seconds_per_step(records: list[dict]) -> float:
    """The mean time of a training step from ``log.jsonl``'s train records (in the order written),
    over the steps of the last start alone: a run stopped and resumed logs its steps anew from its
    last checkpoint's global step (a run started afresh has a log of its own, core.checkpoint.set_aside),
    and the steps before that were timed on another occasion."""
    start = max((i for i in range(1, len(records)) if records[i]["global_step"] <= records[i - 1]["global_step"]),
                default=0)
    last = records[start:]
    gaps = [b["time"] - a["time"] for a, b in zip(last, last[1:])]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def train_one(name: str, recipe: str, overrides: list[str], build, work: str) -> dict:
    from detector import train

    tag = name.split()[1].split("(")[0].replace("fasterrcnn_", "") + f"_{recipe}"
    cfg = load_config(DetConfig, CONFIG, [*overrides, f"work_dir={work}", f"name={tag}", "eval_metric=coco",
                                          "progress=false"])
    cfg = dataclasses.replace(cfg, eval_every=cfg.epochs)  # scored once, at the end
    try:
        metrics = train.run(cfg, build)
    except Exception as e:  # noqa: BLE001 - a recipe that diverges is a row, not the end of the benchmark
        return {"model": name, "recipe": recipe, "error": str(e).splitlines()[0][:120]}
    with open(os.path.join(cfg.out_dir, "log.jsonl")) as f:
        steps = [r for r in map(json.loads, filter(str.strip, f)) if r.get("kind") == "train"]
    coco, wall = metrics["coco"], metrics["wall_seconds"]
    return {"model": name, "recipe": recipe, "AP": coco["AP"], "AP50": coco["AP50"], "AP75": coco["AP75"],
            "steps": steps[-1]["global_step"], "s_per_step": seconds_per_step(steps), "wall_min": wall / 60,
            "epochs": cfg.epochs, "batch": cfg.batch_size, "data": f"{cfg.data.root} {cfg.data.train_split}",
            "cfg": cfg}


def run(args: argparse.Namespace) -> int:
    work = args.work or tempfile.mkdtemp(prefix="realphotos_")
    rows, drawn = [], {}
    for name, recipe, extra, build in runs(args.models):
        rows.append(train_one(name, recipe, [*args.overrides, *extra], build, work))
        print(f"  trained {name}, {recipe} recipe: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in rows[-1].items()
            if k not in ("model", "recipe", "cfg")), flush=True)
        if args.draw and "error" not in rows[-1]:
            drawn[f"{name}, {recipe}"] = detections_drawn(rows[-1]["cfg"], build, args.draw)
    print_table(rows)
    if args.json:
        write_json_atomic(args.json, [{k: v for k, v in r.items() if k != "cfg"} for r in rows])
    if drawn:
        grid = np.concatenate([labelled(row, title) for title, row in drawn.items()])
        args.picture = args.picture or os.path.join(work, "realphotos.jpg")
        write_bytes_atomic(args.picture, cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
        print(f"detections (score >= {DRAW_SCORE}) on the first {args.draw} val photos: {args.picture}")
    return 0


def detections_drawn(cfg: DetConfig, build, n: int) -> list[np.ndarray]:
    """The trained model's detections (score >= :data:`DRAW_SCORE`) drawn on the first ``n``
    val photos at the test scale, each ``DRAW_HEIGHT`` px high: BGR images."""
    import torch

    from core.data import read_image
    from detector.data.build import build_detection_data
    from detector.data.dataset import to_tensor
    from detector.data.transforms import resize_image
    from detector.final import FINAL_NAME, load_final
    from detector.visualize import draw_boxes

    path = os.path.join(cfg.out_dir, FINAL_NAME)
    _, index = build_detection_data(cfg.data, train=False)
    if build is None:
        model = load_final(path)[0]
    else:
        model = build(len(index.classes))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
    model.eval()
    out = []
    for r in index.records[:n]:
        image = resize_image(read_image(r.path), cfg.data.test_scale, cfg.data.max_size)
        with torch.inference_mode():
            det = model([to_tensor(image)])[0]
        keep = det["scores"] >= DRAW_SCORE
        drawn = draw_boxes(image, det["boxes"][keep].numpy(), det["labels"][keep].numpy(), list(index.class_names),
                           det["scores"][keep].numpy())
        out.append(cv2.resize(drawn, (round(drawn.shape[1] * DRAW_HEIGHT / drawn.shape[0]), DRAW_HEIGHT)))
    return out


def labelled(images: list[np.ndarray], title: str) -> np.ndarray:
    """One row of the picture: the title above the images side by side."""
    row = np.concatenate(images, axis=1)
    bar = np.full((24, row.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, row])


def print_table(rows: list[dict]) -> None:
    ok = [r for r in rows if "error" not in r]
    best = {}
    for r in ok:  # each model's better recipe, by AP
        if r["model"] not in best or r["AP"] > best[r["model"]]["AP"]:
            best[r["model"]] = r
    if ok:
        r = ok[0]
        print(f"from scratch on {r['data']}: {r['epochs']} epochs of batch {r['batch']}; COCO AP on val; "
              "s/step: training steps alone; wall: training and scoring; * the model's better recipe")
    head = f"{'model':<48} {'recipe':<6} {'AP':>5} {'AP50':>5} {'AP75':>5} {'s/step':>6} {'wall min':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<48} {r['recipe']:<6} failed: {r['error']}")
            continue
        mark = "*" if best.get(r["model"]) is r and sum(x["model"] == r["model"] for x in ok) > 1 else ""
        print(f"{r['model']:<48} {r['recipe'] + mark:<6} {100 * r['AP']:>5.1f} {100 * r['AP50']:>5.1f} "
              f"{100 * r['AP75']:>5.1f} {r['s_per_step']:>6.2f} {r['wall_min']:>8.1f}")
