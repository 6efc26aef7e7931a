"""A result set scored by a protocol, and its results files written and read."""

from __future__ import annotations

import glob
import os
import re

from ..evaluation import (
    ImageDetections,
    evaluate_coco,
    evaluate_ilsvrc,
    evaluate_voc,
    read_coco_results,
    read_ilsvrc_results,
    read_voc_results,
    write_coco_results,
    write_ilsvrc_results,
    write_voc_results,
)
from .ground_truth import GroundTruth

METRICS = ("ilsvrc", "voc07", "voc", "coco")


def score(gt: GroundTruth, dets: list[ImageDetections], metric: str, coco_backend: str = "auto") -> dict:
    """``{"map", "ap" [C], "npos" [C], "curves"}``; COCO gives ``{"map", "stats"}`` (its twelve numbers,
    from ``coco_backend``: see :mod:`detector.evaluation.coco`)."""
    n = len(gt.classes)
    if metric == "ilsvrc":
        return evaluate_ilsvrc(gt.records, dets, n)
    if metric in ("voc07", "voc"):
        return evaluate_voc(gt.records, dets, n, use_07_metric=metric == "voc07")
    stats = evaluate_coco(gt.records, dets, gt.result_ids, gt.class_names, coco_gt=gt.coco_gt,
                          backend=coco_backend)
    return {"map": stats["AP"], "stats": stats}


def write_results(folder: str, gt: GroundTruth, dets: list[ImageDetections]) -> None:
    """``ilsvrc.txt`` (submission lines), ``coco.json`` and ``voc/comp4_det_<split>_<class>.txt``
    in ``folder``."""
    write_ilsvrc_results(os.path.join(folder, "ilsvrc.txt"), gt.records, dets, gt.result_ids)
    write_coco_results(os.path.join(folder, "coco.json"), gt.records, dets, gt.result_ids)
    write_voc_results(os.path.join(folder, "voc"), gt.records, dets, gt.classes, gt.split)


def is_voc_results(source: str) -> bool:
    """A folder or glob of VOC per-class files, or one such file (``<comp>_det_<split>_<class>.txt``)."""
    return (os.path.isdir(source) or glob.has_magic(source)
            or re.fullmatch(r".+_det_.+\.txt", os.path.basename(source)) is not None)


def results_name(source: str) -> str:
    """What a report calls scored results: a file's stem, a folder's name, a glob's folder's name."""
    if glob.has_magic(source):
        source = os.path.dirname(source) or "results"
    source = os.path.normpath(source)
    return os.path.basename(source) if os.path.isdir(source) else os.path.splitext(os.path.basename(source))[0]


def read_results(source: str, gt: GroundTruth) -> list[ImageDetections]:
    """Saved results: COCO JSON (``.json``), VOC per-class files (a folder, a glob, or a
    ``*_det_*.txt`` file), or ILSVRC submission lines (anything else)."""
    if source.endswith(".json"):
        return read_coco_results(source, gt.records, gt.result_ids)
    if is_voc_results(source):
        return read_voc_results(source, gt.records, gt.classes)
    return read_ilsvrc_results(source, gt.records, gt.result_ids)
