"""COCO-format JSON (read with pycocotools): category ids mapped to contiguous labels 1..C (sorted
by id) and back; crowd regions kept as ignored; ``bbox`` is xywh in continuous pixels."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np

from core.errors import DataError

from ..box_ops import clip_xyxy, xywh_to_xyxy, xyxy_to_xywh
from .sample import CROSSING, DataReport, ImageRecord, empty_boxes


class COCODet:
    def __init__(self, ann_file: str, image_dir: str) -> None:
        from pycocotools.coco import COCO

        if not os.path.isfile(ann_file):
            raise DataError(f"no COCO annotations at {ann_file}: point data.ann_file=... at instances_<split>.json")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                self.coco = COCO(ann_file)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{ann_file}: not a COCO annotation file ({type(e).__name__}: {e})") from None
        self.ann_file, self.image_dir = ann_file, image_dir
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in cats]  # label k <-> category_ids[k - 1]
        self.classes = [c["name"] for c in cats]
        self.class_names = list(self.classes)
        self.label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.report = DataReport()
        self.records = [self._record(img) for img in sorted(self.coco.loadImgs(self.coco.getImgIds()),
                                                             key=lambda i: i["id"])]

    def _record(self, img: dict) -> ImageRecord:
        w, h = int(img["width"]), int(img["height"])
        boxes, labels, ignore = [], [], []
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=img["id"])):
            x, y, bw, bh = ann["bbox"]
            if bw <= 0 or bh <= 0:
                self.report.add("empty boxes (dropped)", f"{self.ann_file}: annotation {ann['id']} has bbox {ann['bbox']}")
                continue
            if ann["category_id"] not in self.label_of:
                self.report.add("unknown categories (skipped)",
                                f"{self.ann_file}: annotation {ann['id']} has category {ann['category_id']}")
                continue
            b = xywh_to_xyxy(np.array([ann["bbox"]]))
            if not np.allclose(b, clip_xyxy(b, h, w)):
                self.report.add(CROSSING, f"{self.ann_file}: annotation {ann['id']} crosses the border of the "
                                          f"{w}x{h} image")
            boxes.append(b[0])
            labels.append(self.label_of[ann["category_id"]])
            ignore.append(bool(ann.get("iscrowd", 0)))
        if boxes:
            arrays = np.stack(boxes).astype(np.float32), np.array(labels, np.int64), np.array(ignore, bool)
        else:
            arrays = empty_boxes()
        return ImageRecord(os.path.join(self.image_dir, img["file_name"]), img["id"], w, h, *arrays,
                           source=self.ann_file)


def records_to_coco(records: list[ImageRecord], category_ids: list[int], names: list[str]) -> dict:
    """Ground truth back to COCO JSON: labels to category ids, ignore to iscrowd, xyxy to xywh."""
    images, anns = [], []
    for r in records:
        images.append({"id": r.image_id, "width": r.width, "height": r.height, "file_name": os.path.basename(r.path)})
        for box, label, crowd in zip(xyxy_to_xywh(r.boxes).tolist(), r.labels.tolist(), r.ignore.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": r.image_id, "category_id": category_ids[label - 1],
                         "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2), "iscrowd": int(crowd)})
    cats = [{"id": cid, "name": n} for cid, n in zip(category_ids, names)]
    return {"images": images, "annotations": anns, "categories": cats}
