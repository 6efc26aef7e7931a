"""``data``: the detection training pipeline (decode, augment, collate) in one process, i.e. per
loader worker: ours (OpenCV + albumentations) against PIL + torchvision.transforms.v2 doing the
same (multi-scale shorter side with a cap, flip, colour jitter, to float tensors)."""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import torch
import torchvision
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from detector.data import COCODet, DetectionDataset, DetTransform, collate

from .common import add_command, median_seconds

TINY_COCO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "tiny_coco")


def add_parser(sub) -> None:
    c = add_command(sub, "data", "detection data pipeline per worker: ours against PIL + torchvision v2", 2, 224, 3, 1,
                    "cpu")
    c.add_argument("--coco", default=os.path.normpath(TINY_COCO))
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The detection training pipeline (decode, augment, collate) in one process, i.e. per loader
    worker: ours (OpenCV + albumentations) against PIL + torchvision.transforms.v2 doing the same
    (multi-scale shorter side with a cap, flip, colour jitter, to float tensors)."""
    root = args.coco
    ann = os.path.join(root, "annotations", "instances_train2017.json")
    if not os.path.isfile(ann):
        print(f"benchmark: no tiny COCO at {root} (looked for {ann}): pass --coco DIR", file=sys.stderr)
        return 2
    index = COCODet(ann, os.path.join(root, "train2017"))
    records = index.records
    scales = (480, 576, 688, 864)
    ours = DetectionDataset(records, DetTransform(scales, 1000, train=True, photometric=0.2))
    peer_tf = v2.Compose([v2.RandomShortestSize(min_size=list(scales), max_size=1000), v2.RandomHorizontalFlip(),
                          v2.ColorJitter(0.2, 0.2, 0.2), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                          v2.SanitizeBoundingBoxes(labels_getter=lambda d: d["labels"])])

    def peer_item(r):
        img = Image.open(r.path).convert("RGB")
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(r.boxes), format="XYXY", canvas_size=(r.height, r.width))
        return peer_tf({"image": img, "boxes": boxes, "labels": torch.from_numpy(r.labels)})

    def run_ours():
        for k in range(0, len(ours), args.batch):
            collate([ours[i] for i in range(k, min(k + args.batch, len(ours)))])

    def run_peer():
        for k in range(0, len(records), args.batch):
            items = [peer_item(records[i]) for i in range(k, min(k + args.batch, len(records)))]
            [it["image"] for it in items], [{"boxes": it["boxes"], "labels": it["labels"]} for it in items]

    torch.set_num_threads(1)  # one loader worker uses one core: so do OpenCV and torch here
    cv2.setNumThreads(1)
    rows = []
    for name, fn in (("ours: OpenCV + albumentations", run_ours),
                     (f"PIL + torchvision.transforms.v2 ({torchvision.__version__})", run_peer)):
        sec = median_seconds(fn, torch.device("cpu"), args.warmup, args.repeats)
        rows.append((name, len(records) / sec))
    print(f"{len(records)} tiny COCO photos (about 640x480), shorter side to one of {scales} (cap 1000), flip, colour "
          f"jitter, collate in batches of {args.batch}; one process, one thread; median of {args.repeats}")
    print(f"{'pipeline':<48} {'img/s per worker':>16} {'ratio':>6}")
    for name, ips in rows:
        print(f"{name:<48} {ips:>16.1f} {ips / rows[1][1]:>6.2f}")
    return 0
