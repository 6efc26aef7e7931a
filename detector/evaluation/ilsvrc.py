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

from .ap import FlatDetections, ImageDetections, ap_all_points, check_aligned, precision_recall


def object_thresholds(boxes: np.ndarray) -> np.ndarray:
    """[M, 4] xyxy -> [M] IoU thresholds min(0.5, wh / ((w + 10)(h + 10))); w = xmax - xmin + 1 in
    the devkit's inclusive pixels, which is x2 - x1 here."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return np.minimum(0.5, w * h / ((w + 10.0) * (h + 10.0)))


def _iou_padded(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """[K, 4] x [K, M, 4] (each detection against its own group's objects) -> [K, M] IoU."""
    d, g = det_boxes[:, None, :], gt_boxes
    iw = (np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0])).clip(0)  # [K, M]
    ih = (np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1])).clip(0)  # [K, M]
    inter = iw * ih
    union = ((d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1]) + (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
             - inter)
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_greedy(det_key: np.ndarray, det_box: np.ndarray, gt_key: np.ndarray, gt_box: np.ndarray,
                 chunk: int = 1 << 18) -> np.ndarray:
    """Every (image, class) group at once: detections ``det_key`` [K] / ``det_box`` [K, 4], sorted
    by group and, within one, in descending score order; objects ``gt_key`` [M] / ``gt_box`` [M, 4]
    sorted by group -> [K] true-positive flags.

    Each detection takes the not-yet-taken object of its group with the highest IoU among those
    that reach their own threshold. What a detection may take depends on what the ones before it
    in its group took, so the walk goes rank by rank: the r-th candidate of every group in one
    vectorised step, as many steps as the longest group has candidates."""
    tp = np.zeros(len(det_key), bool)
    keys, start, count = np.unique(gt_key, return_index=True, return_counts=True)
    if not len(det_key) or not len(keys):
        return tp
    group = np.searchsorted(keys, det_key).clip(max=len(keys) - 1)
    has = np.flatnonzero(keys[group] == det_key)  # detections in a group with objects
    width = int(count.max())
    slot = np.arange(len(gt_key)) - np.repeat(start, count)
    boxes = np.zeros((len(keys), width, 4))
    thresholds = np.full((len(keys), width), np.inf)  # padding is never reached
    gidx = np.repeat(np.arange(len(keys)), count)
    boxes[gidx, slot] = gt_box
    thresholds[gidx, slot] = object_thresholds(gt_box)
    ok = np.full((len(has), width), -1.0)  # IoU where it reaches the object's threshold, else -1
    for lo in range(0, len(has), chunk):  # bounded memory on a million detections
        rows = has[lo:lo + chunk]
        iou = _iou_padded(det_box[rows], boxes[group[rows]])
        ok[lo:lo + chunk] = np.where(iou >= thresholds[group[rows]], iou, -1.0)
    cand = np.flatnonzero((ok >= 0).any(1))
    det, grp, ok = has[cand], group[has[cand]], ok[cand]
    first = np.r_[0, np.flatnonzero(grp[1:] != grp[:-1]) + 1]
    rank = np.arange(len(grp)) - np.repeat(first, np.diff(np.r_[first, len(grp)]))
    taken = np.zeros((len(keys), width), bool)
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        at = np.flatnonzero(rank == r)  # at most one detection of each group
        row = np.where(taken[grp[at]], -1.0, ok[at])
        best = row.argmax(1)
        hit = row[np.arange(len(at)), best] >= 0
        taken[grp[at[hit]], best[hit]] = True
        tp[det[at[hit]]] = True
    return tp


def evaluate_ilsvrc(records: list, dets: list[ImageDetections], num_classes: int) -> dict:
    """``records``: ground truth per image (``boxes``, ``labels``, ``ignore_classes``: the
    blacklisted classes of that image); ``dets``: one :class:`ImageDetections` per record.
    Returns ``{"ap": [C] (NaN for a class without objects), "npos": [C], "map": mean over classes
    with objects, "curves": per class (precision, recall)}``."""
    check_aligned(records, dets)
    flat = FlatDetections.of(dets)
    n_img, width = len(records), num_classes + 1
    # blacklisted (image, class) pairs as a lookup table
    black = np.zeros((n_img, width), bool)
    for i, r in enumerate(records):
        for c in getattr(r, "ignore_classes", ()) or ():
            black[i, c] = True
    sizes = [len(r.labels) for r in records]
    gt_label = np.concatenate([np.asarray(r.labels, np.int64).reshape(-1) for r in records] or [np.zeros(0, int)])
    gt_box = np.concatenate([np.asarray(r.boxes, np.float64).reshape(-1, 4) for r in records] or [np.zeros((0, 4))])
    gt_image = np.repeat(np.arange(n_img), sizes)
    keep = ~black[gt_image, gt_label]
    gt_key = gt_image[keep] * width + gt_label[keep]
    order = np.argsort(gt_key, kind="stable")
    kept = np.flatnonzero(~black[flat.image, flat.label]) if len(flat.image) else np.zeros(0, np.int64)
    key = flat.image[kept] * width + flat.label[kept]
    # within a group: descending score, ties in file order (the devkit's stable sort)
    walk = kept[np.lexsort((kept, -flat.score[kept], key))]
    tp = np.zeros(len(flat.label), bool)
    tp[walk] = match_greedy(flat.image[walk] * width + flat.label[walk], flat.box[walk], gt_key[order],
                            gt_box[keep][order])
    npos = np.bincount(gt_label[keep], minlength=width)[1:width].astype(np.int64)
    by_class = kept[np.lexsort((kept, -flat.score[kept], flat.label[kept]))]
    bounds = np.searchsorted(flat.label[by_class], np.arange(1, width + 1))
    aps = np.full(num_classes, np.nan)
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    for c in range(1, width):
        hits = tp[by_class[bounds[c - 1]:bounds[c]]]
        precision, recall = precision_recall(hits, ~hits, int(npos[c - 1]))
        curves.append((precision, recall))
        if npos[c - 1] > 0:
            aps[c - 1] = ap_all_points(precision, recall)
    valid = ~np.isnan(aps)
    return {"ap": aps, "npos": npos, "map": float(aps[valid].mean()) if valid.any() else float("nan"),
            "curves": curves}
