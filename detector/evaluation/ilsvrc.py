"""The ILSVRC DET protocol, the paper's metric (spec §5; the devkit's eval_detection.m).

Per class, over all images: each object has its own IoU threshold
``min(0.5, w*h / ((w+10)*(h+10)))`` (inclusive-pixel sizes), so objects under about 25x25 px are
matched more loosely; within an image the detections are taken in descending confidence, and each
is matched to the not-yet-matched object of its class with the highest IoU among those that reach
their own threshold: unlike Pascal VOC, a detection whose best-overlap object is taken can still
match another. Blacklisted (image, class) pairs are left out: their detections are dropped and
their objects do not count. AP is the all-point area under the monotone precision/recall curve.
"""

from __future__ import annotations

import numpy as np

from .ap import (
    FlatDetections,
    ImageDetections,
    ap_all_points,
    check_aligned,
    iou_xyxy,
    objects_by_image,
    per_image_groups,
    precision_recall,
)


def object_thresholds(boxes: np.ndarray) -> np.ndarray:
    """[M, 4] xyxy -> [M] IoU thresholds min(0.5, wh / ((w + 10)(h + 10))); w = xmax - xmin + 1 in
    the devkit's inclusive pixels, which is x2 - x1 here."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return np.minimum(0.5, w * h / ((w + 10.0) * (h + 10.0)))


def match_image(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """One image, one class, detections already in descending score order -> [K] true-positive flags.

    The IoU matrix and every threshold test are vectorised; only detections that reach some
    object's threshold are walked in order (the greedy choice depends on what earlier ones took)."""
    tp = np.zeros(len(det_boxes), bool)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    ok = iou_xyxy(det_boxes, gt_boxes)  # [K, M]
    ok = np.where(ok >= object_thresholds(gt_boxes)[None, :], ok, -1.0)
    candidates = np.nonzero((ok >= 0).any(1))[0]
    taken = np.zeros(len(gt_boxes), bool)
    for k in candidates:
        row = np.where(taken, -1.0, ok[k])
        g = int(row.argmax())
        if row[g] >= 0:
            taken[g] = True
            tp[k] = True
    return tp


def evaluate_ilsvrc(records: list, dets: list[ImageDetections], num_classes: int) -> dict:
    """``records``: ground truth per image (``boxes``, ``labels``, ``ignore_classes``: the
    blacklisted classes of that image); ``dets``: one :class:`ImageDetections` per record.
    Returns ``{"ap": [C] (NaN for a class without objects), "npos": [C], "map": mean over classes
    with objects, "curves": per class (precision, recall)}``."""
    check_aligned(records, dets)
    flat = FlatDetections.of(dets)
    n_img = len(records)
    # blacklisted (image, class) pairs as a lookup table
    black = np.zeros((n_img, num_classes + 1), bool)
    for i, r in enumerate(records):
        for c in getattr(r, "ignore_classes", ()) or ():
            black[i, c] = True
    objects = objects_by_image(records, keep=lambda i, labels: ~black[i, labels])
    keep_det = ~black[flat.image, flat.label] if len(flat.image) else np.zeros(0, bool)
    by_label = np.argsort(flat.label, kind="stable")
    bounds = np.searchsorted(flat.label[by_label], np.arange(1, num_classes + 2))
    aps = np.full(num_classes, np.nan)
    npos = np.zeros(num_classes, np.int64)
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    for c in range(1, num_classes + 1):
        sel = by_label[bounds[c - 1]:bounds[c]]
        sel = np.sort(sel[keep_det[sel]])  # file order, before the stable score sort
        img, _, box = flat.of_class(c, sel)
        gt = objects.get(c, {})
        npos[c - 1] = sum(len(b) for b, _ in gt.values())
        has = np.zeros(n_img, bool)
        has[list(gt)] = True
        tp = np.zeros(len(img), bool)
        for i, rows in per_image_groups(img, has):
            tp[rows] = match_image(box[rows], gt[i][0])
        precision, recall = precision_recall(tp, ~tp, int(npos[c - 1]))
        curves.append((precision, recall))
        if npos[c - 1] > 0:
            aps[c - 1] = ap_all_points(precision, recall)
    valid = ~np.isnan(aps)
    return {"ap": aps, "npos": npos, "map": float(aps[valid].mean()) if valid.any() else float("nan"),
            "curves": curves}
