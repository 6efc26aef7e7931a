"""A result set scored by a protocol, and its results files written and read."""

from __future__ import annotations

import os

from ..evaluation import (
    ImageDetections,
    evaluate_coco,
    evaluate_ilsvrc,
    evaluate_voc,
    read_coco_results,
    read_ilsvrc_results,
    write_coco_results,
    write_ilsvrc_results,
)
from .ground_truth import GroundTruth

METRICS = ("ilsvrc", "voc07", "voc", "coco")


def score(gt: GroundTruth, dets: list[ImageDetections], metric: str) -> dict:
    """``{"map", "ap" [C], "npos" [C], "curves"}``; COCO gives ``{"map", "stats"}`` (its twelve numbers)."""
    n = len(gt.classes)
    if metric == "ilsvrc":
        return evaluate_ilsvrc(gt.records, dets, n)
    if metric in ("voc07", "voc"):
        return evaluate_voc(gt.records, dets, n, use_07_metric=metric == "voc07")
    stats = evaluate_coco(gt.records, dets, gt.result_ids, gt.class_names, coco_gt=gt.coco_gt)
    return {"map": stats["AP"], "stats": stats}


def write_results(folder: str, gt: GroundTruth, dets: list[ImageDetections]) -> None:
    """``ilsvrc.txt`` (submission lines) and ``coco.json`` in ``folder``."""
    write_ilsvrc_results(os.path.join(folder, "ilsvrc.txt"), gt.records, dets, gt.result_ids)
    write_coco_results(os.path.join(folder, "coco.json"), gt.records, dets, gt.result_ids)


def read_results(path: str, gt: GroundTruth) -> list[ImageDetections]:
    """A saved results file: COCO JSON (``.json``) or ILSVRC submission lines (anything else)."""
    if path.endswith(".json"):
        return read_coco_results(path, gt.records, gt.result_ids)
    return read_ilsvrc_results(path, gt.records, gt.result_ids)
