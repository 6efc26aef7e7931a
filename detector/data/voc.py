"""Pascal VOC: ``<root>/Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt``, ``JPEGImages/<id>.jpg``.
Boxes are 1-based inclusive pixel indices; difficult objects are kept as ignored."""

from __future__ import annotations

import os

import numpy as np

from core.errors import DataError

from .ilsvrc import boxes_from_objects, read_annotation
from .sample import DataReport, ImageRecord

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


class VOCDet:
    def __init__(self, root: str, split: str = "trainval", classes: tuple[str, ...] = VOC_CLASSES) -> None:
        self.root, self.split = root, split
        self.classes = list(classes)
        self.class_names = list(classes)
        self.class_index = {c: k + 1 for k, c in enumerate(classes)}
        self.report = DataReport()
        listing = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(listing):
            raise DataError(f"no Pascal VOC split at {listing}: point data.root=... at VOCdevkit/VOC20XX")
        with open(listing) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        self.records = [r for r in (self._record(i) for i in ids) if r is not None]

    def _record(self, image_id: str) -> ImageRecord | None:
        xml = os.path.join(self.root, "Annotations", image_id + ".xml")
        image = os.path.join(self.root, "JPEGImages", image_id + ".jpg")
        found = read_annotation(xml, image, self.report)
        if found is None:
            return None
        width, height, objects = found
        boxes, labels, kept = boxes_from_objects(objects, width, height, self.class_index, xml, self.report, origin=1)
        ignore = np.array([objects[i].difficult for i in kept], bool)
        return ImageRecord(image, image_id, width, height, boxes, labels, ignore, source=xml)
