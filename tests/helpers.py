"""Comparing detections the way that carries meaning on any CPU.

Two computations of the same detections (a batch against single images, an ensemble of one model
against the model, two processes against one) agree to float rounding, which differs from one
CPU's kernels to another's. What must agree is what a person reads off them: each confident
detection's class, its box to a fraction of a pixel and its score to the third decimal. Scores
that a model gives near-tied regions, or that sit at the edge of a threshold or of the NMS, may
come out in another order or fall the other side of the edge: those are not compared.
"""

from __future__ import annotations

import numpy as np

from detector.box_ops import iou_xyxy


def confident(boxes, scores, labels, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections scoring at least ``min_score``, as NumPy arrays."""
    boxes, scores, labels = (np.asarray(x) for x in (boxes, scores, labels))
    keep = scores >= min_score
    return boxes[keep].reshape(-1, 4), scores[keep], labels[keep]


def unmatched(a: tuple, b: tuple, min_score: float, box_tol: float = 0.5, score_tol: float = 2e-3,
              min_iou: float | None = None) -> list:
    """The detections of ``a`` scoring at least ``min_score + score_tol`` that ``b`` has no match
    for (the same label, every box side within ``box_tol`` px, or with ``min_iou`` an IoU of at
    least that, the score within ``score_tol``), and the same the other way round. ``a`` and
    ``b``: ``(boxes [N, 4], scores [N], labels [N])``. Detections within ``score_tol`` of the
    threshold may be on either side of it in the other."""
    missing = []
    for (x, y) in ((a, b), (b, a)):
        xb, xs, xl = confident(*x, min_score + score_tol)
        yb, ys, yl = confident(*y, min_score - score_tol)
        taken = np.zeros(len(ys), bool)
        for box, score, label in zip(xb, xs, xl):
            near = (np.abs(yb - box).max(1, initial=0) <= box_tol if min_iou is None
                    else iou_xyxy(box[None], yb)[0] >= min_iou)  # [M]
            fits = (~taken & (yl == label) & (np.abs(ys - score) <= score_tol) & near
                    if len(ys) else np.zeros(0, bool))
            if fits.any():
                taken[np.flatnonzero(fits)[0]] = True
            else:
                missing.append((box.tolist(), float(score), int(label)))
    return missing


def assert_same_detections(a: tuple, b: tuple, min_score: float, box_tol: float = 0.5,
                           score_tol: float = 2e-3, at_least: int = 1, min_iou: float | None = None) -> None:
    """``a`` and ``b`` hold the same confident detections (:func:`unmatched`), and at least
    ``at_least`` of them, so that the comparison compares something."""
    n = len(confident(*a, min_score)[1])
    assert n >= at_least, f"only {n} detections score >= {min_score}: nothing to compare"
    missing = unmatched(a, b, min_score, box_tol, score_tol, min_iou)
    assert not missing, f"{len(missing)} confident detections without a match: {missing[:3]}"


def overlap_share(a_boxes: np.ndarray, b_boxes: np.ndarray, iou: float = 0.9) -> float:
    """The share of ``a_boxes`` with a box of ``b_boxes`` at IoU >= ``iou`` (1.0 when ``a`` is empty)."""
    if not len(a_boxes):
        return 1.0
    if not len(b_boxes):
        return 0.0
    return float((iou_xyxy(a_boxes, b_boxes).max(1) >= iou).mean())
