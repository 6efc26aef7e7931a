"""``eval``: scoring speed on one generated ILSVRC-val-sized set (20k images, 200 classes; 1M
detections by default): the ILSVRC and VOC protocols (ours), reading an ILSVRC results file back,
and COCO metrics through each library (hotcoco, faster-coco-eval, pycocotools), with the largest
difference of their twelve numbers from pycocotools'."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from detector.data import ImageRecord
from detector.evaluation import (
    ImageDetections,
    evaluate_coco,
    evaluate_ilsvrc,
    evaluate_voc,
    read_ilsvrc_results,
    write_ilsvrc_results,
)
from detector.evaluation.coco import coco_backend

from .common import add_command


def add_parser(sub) -> None:
    c = add_command(sub, "eval", "scoring speed: our protocols, and COCO metrics by hotcoco, faster-coco-eval and "
                    "pycocotools", 1, 224, 1, 0, "cpu")
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


def _timed(name: str, fn) -> tuple[float, object]:
    tic = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - tic
    print(f"  measured {name}: {sec:.2f} s", file=sys.stderr, flush=True)
    return sec, out


def _coco_rows(records, dets) -> list[tuple[str, float, float, str]]:
    """``(name, seconds, AP, largest difference from pycocotools' twelve numbers)`` per library."""
    cats, names = list(range(1, 201)), [str(c) for c in range(1, 201)]
    stats = {}
    for backend in ("hotcoco", "faster-coco-eval", "pycocotools"):
        try:
            coco_backend(backend)
        except ValueError as e:
            print(f"  skipped: {e}", file=sys.stderr)
            continue
        sec, stats[backend] = _timed(f"COCO metrics ({backend})",
                                     lambda b=backend: evaluate_coco(records, dets, cats, names, backend=b))
        stats[backend]["seconds"] = sec
    ref = stats.get("pycocotools")
    rows = []
    for backend, st in stats.items():
        diff = (f"{max(abs(st[k] - ref[k]) for k in ref if k != 'seconds'):.1e}" if ref else "-")
        rows.append((f"COCO metrics ({backend})", st["seconds"], st["AP"], diff))
    return rows


def run(args: argparse.Namespace) -> int:
    """Every scorer on the same data; speed-ups against pycocotools when it ran."""
    tic = time.perf_counter()
    records, dets = synthetic_scoring_set(args.images, args.per_image, 200)
    made = time.perf_counter() - tic
    n_det, n_obj = sum(len(d.scores) for d in dets), sum(len(r.labels) for r in records)
    print(f"{len(records):,} images, {n_obj:,} objects, {n_det:,} detections, 200 classes (generated in {made:.1f} s)")
    rows = []
    for name, fn in (("ILSVRC DET protocol (ours)", lambda: evaluate_ilsvrc(records, dets, 200)),
                     ("Pascal VOC 2010 (ours)", lambda: evaluate_voc(records, dets, 200))):
        sec, res = _timed(name, fn)
        rows.append((name, sec, res["map"], "-"))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.txt")
        write_ilsvrc_results(path, records, dets, list(range(1, 201)))
        sec, back = _timed("ILSVRC results file read", lambda: read_ilsvrc_results(path, records, list(range(1, 201))))
        rows.append(("ILSVRC results file read (ours)", sec, evaluate_ilsvrc(records, back, 200)["map"], "-"))
    rows += _coco_rows(records, dets)
    base = next((sec for name, sec, *_ in rows if name.endswith("(pycocotools)")), None)
    print(f"{'scoring':<36} {'seconds':>8} {'x pycocotools':>14} {'mAP / AP':>9} {'max |diff| of 12':>17}")
    for name, sec, score, diff in rows:
        speedup = f"{base / sec:.1f}" if base else "-"
        print(f"{name:<36} {sec:>8.2f} {speedup:>14} {score:>9.3f} {diff:>17}")
    return 0
