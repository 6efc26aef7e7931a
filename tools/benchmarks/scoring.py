"""``eval``: scoring speed: the ILSVRC and VOC protocols (ours) and COCO metrics (pycocotools) on
the same generated ILSVRC-val-sized set."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from detector.data import ImageRecord
from detector.evaluation import ImageDetections, evaluate_coco, evaluate_ilsvrc, evaluate_voc

from .common import add_command


def add_parser(sub) -> None:
    c = add_command(sub, "eval", "scoring speed: ILSVRC protocol against pycocotools' COCO metrics", 1, 224, 1, 0,
                    "cpu")
    c.add_argument("--images", type=int, default=20000)
    c.add_argument("--per-image", type=int, default=50)
    c.set_defaults(run=run)


def synthetic_scoring_set(n_images: int, per_image: int, num_classes: int, seed: int = 0):
    """ILSVRC-val-like ground truth (about 2.8 objects per image, 200 classes) and detections: half
    of them jittered copies of objects, half clutter, random scores."""
    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(n_images):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 400, (n, 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(8, 200, (n, 2))], 1)).astype(np.float32)
        labels = rng.integers(1, num_classes + 1, n)
        records.append(ImageRecord(f"{i}.JPEG", i + 1, 640, 480, boxes, labels, np.zeros(n, bool), index=i + 1))
        k_true = per_image // 2
        src = rng.integers(0, n, k_true)
        near = boxes[src] + rng.normal(0, 6, (k_true, 4)).astype(np.float32)
        xy = rng.uniform(0, 400, (per_image - k_true, 2))
        far = np.concatenate([xy, xy + rng.uniform(8, 200, (per_image - k_true, 2))], 1).astype(np.float32)
        b = np.concatenate([near, far])
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        lab = np.concatenate([labels[src], rng.integers(1, num_classes + 1, per_image - k_true)])
        dets.append(ImageDetections(b, rng.random(per_image).astype(np.float32), lab))
    return records, dets


def run(args: argparse.Namespace) -> int:
    """Scoring speed: the ILSVRC protocol (ours) and COCO metrics (pycocotools) on the same data."""
    tic = time.perf_counter()
    records, dets = synthetic_scoring_set(args.images, args.per_image, 200)
    made = time.perf_counter() - tic
    n_det, n_obj = sum(len(d.scores) for d in dets), sum(len(r.labels) for r in records)
    print(f"{len(records):,} images, {n_obj:,} objects, {n_det:,} detections, 200 classes (generated in {made:.1f} s)")
    rows = []
    for name, fn in (("ILSVRC DET protocol (ours, NumPy)", lambda: evaluate_ilsvrc(records, dets, 200)),
                     ("Pascal VOC 2010 (ours, NumPy)", lambda: evaluate_voc(records, dets, 200)),
                     ("COCO metrics (pycocotools)", lambda: evaluate_coco(records, dets, list(range(1, 201)),
                                                                          [str(c) for c in range(1, 201)]))):
        tic = time.perf_counter()
        res = fn()
        sec = time.perf_counter() - tic
        score = res.get("map", res.get("AP"))
        rows.append((name, sec, score))
        print(f"  measured {name}: {sec:.1f} s", file=sys.stderr, flush=True)
    print(f"{'scoring':<36} {'seconds':>8} {'x pycocotools':>14} {'mAP / AP':>9}")
    for name, sec, score in rows:
        print(f"{name:<36} {sec:>8.2f} {rows[-1][1] / sec:>14.1f} {score:>9.3f}")
    return 0
