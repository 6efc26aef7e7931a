"""Pascal VOC AP: IoU >= 0.5 with the highest-IoU object; a detection whose best object is already
taken is a false positive; difficult objects neither count nor produce false positives. VOC2007
uses the 11-point AP, VOC2010+ the all-point one. Fully vectorised: per image, one IoU matrix; the
"first detection takes the object" rule is a unique() over the score-ordered (image, object) pairs."""

from __future__ import annotations

import numpy as np

from ..box_ops import iou_xyxy
from .ap import (
    FlatDetections,
    ImageDetections,
    ap_11_points,
    ap_all_points,
    check_aligned,
    objects_by_image,
    per_image_groups,
    precision_recall,
)


def evaluate_voc(records: list, dets: list[ImageDetections], num_classes: int, use_07_metric: bool = False,
                 iou_threshold: float = 0.5) -> dict:
    """``records``: ground truth per image (``boxes``, ``labels``, ``ignore`` = difficult)."""
    check_aligned(records, dets)
    flat = FlatDetections.of(dets)
    objects = objects_by_image(records)
    aps = np.full(num_classes, np.nan)
    npos = np.zeros(num_classes, np.int64)
    curves = []
    for c in range(1, num_classes + 1):
        gt = objects.get(c, {})
        npos[c - 1] = sum(int((~d).sum()) for _, d in gt.values())
        img, score, box = flat.of_class(c)
        best_iou = np.zeros(len(img))
        best_gt = np.full(len(img), -1)
        best_difficult = np.zeros(len(img), bool)
        has = np.zeros(len(records), bool)
        has[list(gt)] = True
        for i, rows in per_image_groups(img, has):
            ov = iou_xyxy(box[rows], gt[i][0])  # [k, m]
            best_iou[rows], best_gt[rows] = ov.max(1), ov.argmax(1)
            best_difficult[rows] = gt[i][1][best_gt[rows]]
        hit = best_iou >= iou_threshold
        difficult = best_difficult & hit
        tp = np.zeros(len(img), bool)
        claim = np.flatnonzero(hit & ~difficult)
        if len(claim):
            key = img[claim].astype(np.int64) * (1 << 32) + best_gt[claim]
            _, first = np.unique(key, return_index=True)  # claim is in score order: first = best scored
            tp[claim[first]] = True
        fp = ~tp & ~(hit & difficult)
        keep = ~(hit & difficult)  # difficult matches are neither
        precision, recall = precision_recall(tp[keep], fp[keep], int(npos[c - 1]))
        curves.append((precision, recall))
        if npos[c - 1] > 0:
            aps[c - 1] = ap_11_points(precision, recall) if use_07_metric else ap_all_points(precision, recall)
    valid = ~np.isnan(aps)
    return {"ap": aps, "npos": npos, "map": float(aps[valid].mean()) if valid.any() else float("nan"),
            "curves": curves}
