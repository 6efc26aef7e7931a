"""The proposal-recall table every proposal paper prints: for the best N boxes of each image, the
mean number of boxes and the share of ground-truth objects that some box covers at IoU 0.5, 0.7
and at the ILSVRC per-object threshold ``min(0.5, wh / ((w + 10)(h + 10)))``."""

from __future__ import annotations

import numpy as np

from ..box_ops import iou_xyxy
from ..evaluation.ilsvrc import object_thresholds

TOPS = (100, 300, 1000, 2000, None)  # None: all


def best_overlaps(gt_boxes: np.ndarray, boxes: np.ndarray, tops=TOPS) -> np.ndarray:
    """[M, 4] objects, [P, 4] proposals best first -> [len(tops), M]: each object's best IoU
    with the first N proposals."""
    out = np.zeros((len(tops), len(gt_boxes)))
    if len(gt_boxes) and len(boxes):
        iou = iou_xyxy(np.asarray(gt_boxes, np.float64), np.asarray(boxes, np.float64))  # [M, P]
        best = np.maximum.accumulate(iou, axis=1)  # [M, P]: best over the first j + 1
        for t, n in enumerate(tops):
            out[t] = best[:, min(n or len(boxes), len(boxes)) - 1]
    return out


def recall_table(records: list, proposals: list[np.ndarray], tops=TOPS) -> list[dict]:
    """One row per N of ``tops``: ``{"top", "boxes_per_image", "recall_0.5", "recall_0.7",
    "recall_ilsvrc", "objects"}``; objects marked ignore (crowds, difficult) are not counted."""
    overlaps, thresholds = [], []
    counts = np.array([len(p) for p in proposals], np.float64)
    for rec, boxes in zip(records, proposals):
        gt = np.asarray(rec.boxes, np.float64).reshape(-1, 4)[~np.asarray(rec.ignore, bool)]
        overlaps.append(best_overlaps(gt, boxes, tops))
        thresholds.append(object_thresholds(gt))
    ov = np.concatenate(overlaps, axis=1) if overlaps else np.zeros((len(tops), 0))
    thr = np.concatenate(thresholds) if thresholds else np.zeros(0)
    n = max(ov.shape[1], 1)
    rows = []
    for t, top in enumerate(tops):
        rows.append({"top": "all" if top is None else top,
                     "boxes_per_image": float(np.minimum(counts, top or np.inf).mean()) if len(counts) else 0.0,
                     "recall_0.5": float((ov[t] >= 0.5).sum() / n), "recall_0.7": float((ov[t] >= 0.7).sum() / n),
                     "recall_ilsvrc": float((ov[t] >= thr).sum() / n), "objects": int(ov.shape[1])})
    return rows


def format_table(rows: list[dict], title: str) -> str:
    lines = [title, f"{'top N':>7} {'boxes/img':>10} {'R@0.5':>7} {'R@0.7':>7} {'R@ILSVRC':>9}"]
    for r in rows:
        lines.append(f"{r['top']!s:>7} {r['boxes_per_image']:>10.1f} {100 * r['recall_0.5']:>6.1f}% "
                     f"{100 * r['recall_0.7']:>6.1f}% {100 * r['recall_ilsvrc']:>8.1f}%")
    return "\n".join(lines) + f"\n({rows[0]['objects'] if rows else 0} objects)"
