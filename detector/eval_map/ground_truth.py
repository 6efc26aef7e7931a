"""The split being scored: its dataset (for inference), its records (for scoring) and the ids the
results files use."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import DataError

from ..config import DetConfig
from ..data.build import build_detection_data, build_detection_index
from ..data.sample import DataReport, ImageRecord


@dataclass
class GroundTruth:
    dataset: object
    records: list[ImageRecord]
    classes: list[str]
    class_names: list[str]
    result_ids: list[int]  # label k -> DET ID (ILSVRC) / category id (COCO) / k (VOC) in results files
    coco_gt: object | None
    description: str
    split: str
    report: DataReport  # what reading the annotations skipped or fixed


def result_ids(index) -> list[int]:
    """Label k's id in results files: its DET ID (ILSVRC), category id (COCO) or k (VOC)."""
    return list(getattr(index, "det_ids", None) or getattr(index, "category_ids", None)
                or range(1, len(index.classes) + 1))


def ground_truth(cfg: DetConfig, with_proposals: bool = False, with_dataset: bool = True) -> GroundTruth:
    """The split ``cfg.data.val_split``; ``with_proposals``: its samples carry the external
    proposals (``data.proposals``) that the members score; without ``with_dataset`` (scoring a
    results file) only the records, and ``dataset`` is None."""
    if with_dataset:
        ds, index = build_detection_data(cfg.data, train=False, seed=cfg.seed, with_proposals=with_proposals)
    else:
        ds, (index, _) = None, build_detection_index(cfg.data, train=False, seed=cfg.seed)
    if not index.records:
        raise DataError(f"{cfg.data.root}: split {cfg.data.val_split} has no images to score")
    for pos, r in enumerate(index.records):  # ILSVRC lines need an image index; VOC/COCO: the position
        if r.index < 0:
            r.index = pos + 1
    return GroundTruth(ds, index.records, list(index.classes), list(index.class_names), result_ids(index),
                       getattr(index, "coco", None), f"{cfg.data.format} {cfg.data.root} [{cfg.data.val_split}]",
                       cfg.data.val_split, index.report)
