"""Shared pieces of the AP protocols: per-image detections and the precision/recall areas (their IoU is
``detector.box_ops.iou_xyxy``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageDetections:
    """One image's detections, aligned with its ground-truth record."""

    boxes: np.ndarray  # [K, 4] float xyxy, pixels
    scores: np.ndarray  # [K]
    labels: np.ndarray  # [K] int, 1..C

    @staticmethod
    def empty() -> ImageDetections:
        return ImageDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def precision_recall(tp: np.ndarray, fp: np.ndarray, npos: int) -> tuple[np.ndarray, np.ndarray]:
    """``tp``/``fp`` flags [K] in descending score order -> (precision [K], recall [K])."""
    ctp, cfp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    recall = ctp / npos if npos > 0 else np.zeros_like(ctp)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return precision, recall


def ap_all_points(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision/recall curve with precision made monotone (VOC 2010+, ILSVRC)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


# VOC 2007's eleven recall thresholds as its devkit's ``0:0.1:1`` comes out in Octave, and as NumPy's
# arange gives them (py-faster-rcnn's voc_eval.py, detectron2 and mmdetection use it): 0.3, 0.6 and
# 0.7 are one ulp above, so a recall of exactly 3/10 does not reach "0.3". MATLAB builds the upper
# half of a colon range from its end, so its 0.6 and 0.7 are exact (docs/scoring.md).
VOC07_RECALLS = np.arange(0.0, 1.1, 0.1)


def ap_11_points(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2007: the mean over the eleven recalls of the best precision at that recall or more,
    summed as ``VOCevaldet.m`` sums it (``ap = ap + p / 11``)."""
    ap = 0.0
    for t in VOC07_RECALLS:
        above = precision[recall >= t]
        ap += (above.max() if above.size else 0.0) / 11
    return float(ap)


@dataclass
class FlatDetections:
    """Every image's detections in one set of arrays, in image order (the devkits' file order)."""

    image: np.ndarray  # [K] position of the image in the record list
    label: np.ndarray  # [K]
    score: np.ndarray  # [K] float64
    box: np.ndarray  # [K, 4]

    @staticmethod
    def of(dets: list[ImageDetections]) -> FlatDetections:
        sizes = [len(d.scores) for d in dets]
        if not sum(sizes):
            return FlatDetections(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4)))
        return FlatDetections(np.repeat(np.arange(len(dets)), sizes),
                              np.concatenate([d.labels for d in dets]).astype(np.int64),
                              np.concatenate([d.scores for d in dets]).astype(np.float64),
                              np.concatenate([d.boxes for d in dets]).astype(np.float64))

    def of_class(self, label: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image [k], score [k], box [k, 4]) of ``label``, in descending score order (stable: ties
        keep file order, as the devkits' sort does)."""
        idx = np.flatnonzero(self.label == label) if order is None else order
        idx = idx[np.argsort(-self.score[idx], kind="stable")]
        return self.image[idx], self.score[idx], self.box[idx]


def objects_by_image(records: list, keep=None) -> dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """{label: {image position: (boxes [m, 4], ignore [m])}} in one pass over the records;
    ``keep(i, labels) -> [m] bool`` drops objects (the ILSVRC blacklist)."""
    out: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for i, r in enumerate(records):
        labels = np.asarray(r.labels)
        if not len(labels):
            continue
        mask = np.ones(len(labels), bool) if keep is None else keep(i, labels)
        for c in np.unique(labels[mask]):
            m = mask & (labels == c)
            out.setdefault(int(c), {})[i] = (np.asarray(r.boxes, np.float64)[m], np.asarray(r.ignore, bool)[m])
    return out


def per_image_groups(image: np.ndarray, wanted: np.ndarray):
    """Rows of ``image`` (already in score order) grouped by image, each group keeping that order;
    only images with ``wanted[image]`` are yielded, as ``(image, rows)``."""
    rows = np.flatnonzero(wanted[image]) if len(image) else np.zeros(0, np.int64)
    if not len(rows):
        return
    rows = rows[np.argsort(image[rows], kind="stable")]
    cuts = np.flatnonzero(image[rows][1:] != image[rows][:-1]) + 1
    for group in np.split(rows, cuts):
        yield int(image[group[0]]), group


def check_aligned(records: list, dets: list[ImageDetections]) -> None:
    if len(records) != len(dets):
        raise ValueError(f"{len(dets)} detection lists for {len(records)} images: give one per image, in order")
    for i, d in enumerate(dets):
        if not (len(d.boxes) == len(d.scores) == len(d.labels)):
            raise ValueError(f"image {i}: {len(d.boxes)} boxes, {len(d.scores)} scores, {len(d.labels)} labels")
        if len(d.scores) and not np.isfinite(d.scores).all():
            raise ValueError(f"image {i}: a score is not finite")
