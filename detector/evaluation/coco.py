"""COCO metrics through pycocotools (AP at IoU .50:.05:.95, AP50, AP75, small/medium/large, AR),
for COCO data (its own ground truth, areas and crowds included) or any records."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..box_ops import xyxy_to_xywh
from ..data.coco import records_to_coco
from .ap import ImageDetections, check_aligned

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10", "AR_100", "AR_small",
              "AR_medium", "AR_large")


def detections_to_coco(records: list, dets: list[ImageDetections], category_ids: list[int]) -> list[dict]:
    """Detections as a COCO results list (``bbox`` xywh, ``category_id`` mapped back)."""
    out = []
    for r, d in zip(records, dets):
        for box, score, label in zip(xyxy_to_xywh(d.boxes).tolist(), d.scores.tolist(), d.labels.tolist()):
            out.append({"image_id": r.image_id, "category_id": category_ids[int(label) - 1],
                        "bbox": [round(v, 3) for v in box], "score": float(score)})
    return out


def evaluate_coco(records: list, dets: list[ImageDetections], category_ids: list[int], names: list[str],
                  coco_gt=None) -> dict:
    """``coco_gt``: the data set's own ``pycocotools.coco.COCO`` (``COCODet.coco``) when there is one,
    so that its areas and crowd regions are used as they are; else one is built from ``records``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    check_aligned(records, dets)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if coco_gt is None:
            coco_gt = COCO()
            coco_gt.dataset = records_to_coco(records, category_ids, names)
            coco_gt.createIndex()
        results = detections_to_coco(records, dets, category_ids)
        if not results:
            return {name: 0.0 for name in STAT_NAMES}
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [r.image_id for r in records]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(ev.stats))}
