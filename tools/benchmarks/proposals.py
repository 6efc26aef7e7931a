"""``proposals``: Selective Search seconds per image on the shipped photos (one thread; R-CNN's
fast setting beside the entry's 2x superpixels and the quality mode), tools/make_proposals.py's
images/s with 1 and 2 worker processes, and a member's RPN dumping its best 200 boxes (images/s)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

from core.engines import Engine
from core.runtime import select_device
from detector.data.coco import COCODet
from detector.data.dataset import load_sample
from detector.model import googlenet_faster_rcnn
from detector.proposals.make import Job, compute
from detector.proposals.methods import RPNBoxes, SelectiveSearchBoxes, SelectiveSearchRecipe
from detector.proposals.selective_search import SelectiveSearch, require_ximgproc

from .common import add_command
from .data import TINY_COCO


def add_parser(sub) -> None:
    c = add_command(sub, "proposals", "Selective Search s/image, make_proposals images/s, RPN dumping images/s", 1,
                    600, 1, 0, "auto")
    c.add_argument("--coco", default=os.path.normpath(TINY_COCO))
    c.add_argument("--images", type=int, default=8, help="photos to time (tiny COCO val2017, in order)")
    c.set_defaults(run=run)


def _per_image(fn, records) -> tuple[float, float]:
    """(seconds an image, boxes an image) of ``fn(record) -> (boxes, scores)`` over ``records``."""
    start, boxes = time.perf_counter(), 0
    for r in records:
        boxes += len(fn(r)[0])
    return (time.perf_counter() - start) / len(records), boxes / len(records)


def run(args: argparse.Namespace) -> int:
    root = args.coco
    ann = os.path.join(root, "annotations", "instances_val2017.json")
    if not os.path.isfile(ann):
        print(f"benchmark: no tiny COCO at {root} (looked for {ann}): pass --coco DIR", file=sys.stderr)
        return 2
    require_ximgproc()
    records = COCODet(ann, os.path.join(root, "val2017")).records[: args.images]
    sizes = np.array([(r.width, r.height) for r in records])
    print(f"{len(records)} tiny-COCO val photos (mean {sizes[:, 0].mean():.0f}x{sizes[:, 1].mean():.0f}); "
          f"{os.cpu_count()} CPU cores")
    cv2.setNumThreads(1)
    print(f"{'Selective Search, 1 thread':<40} {'s/image':>8} {'boxes/image':>12}")
    for name, ss in (("R-CNN's fast (k 50, 100)", SelectiveSearch("fast", k_scale=1)),
                     ("the entry's fast (k 100, 200)", SelectiveSearch("fast")),
                     ("the entry's quality (k 100..600)", SelectiveSearch("quality"))):
        sec, n = _per_image(SelectiveSearchBoxes(ss), records)
        print(f"{name:<40} {sec:>8.2f} {n:>12.0f}", flush=True)
    print(f"{'make_proposals, the entry fast':<40} {'workers':>8} {'images/s':>12}")
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            job = Job("val", os.path.join(tmp, "p.npz"), {}, SelectiveSearchRecipe(SelectiveSearch("fast")), chunk=1,
                      engine=Engine("local", workers), progress=False)
            start = time.perf_counter()
            compute(job, records, tmp)
            print(f"{'':<40} {workers:>8} {len(records) / (time.perf_counter() - start):>12.2f}", flush=True)
    device = select_device(args.device)
    for r in records[:1]:
        load_sample(r)  # the page cache warm for both
    model = googlenet_faster_rcnn(200, head="c4")
    rpn = RPNBoxes(model, device, args.size, 1000, 200)
    with torch.inference_mode():
        rpn(records[0])  # warm-up
    sec, n = _per_image(rpn, records)
    print(f"RPN best 200 (C4 trunk, random weights, shorter side {args.size}) on {device}: "
          f"{1 / sec:.2f} images/s, {n:.0f} boxes/image")
    return 0
