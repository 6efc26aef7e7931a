"""Pascal VOC: ``<root>/Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt``, ``JPEGImages/<id>.jpg``.
Boxes are 1-based inclusive pixel indices; difficult objects are kept as ignored."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import numpy as np

from core.errors import DataError

from .ilsvrc import boxes_from_objects, read_annotation
from .sample import DataReport, ImageRecord

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def class_names_in(root: str, splits: list[str]) -> list[str]:
    """The object names the annotations of ``splits`` use, sorted: the class list of a VOC-format
    data set of its own classes (for Pascal VOC itself, the 20 of ``VOC_CLASSES``, which are in
    that order). Splits without a listing are passed over; the readers name them."""
    names: set[str] = set()
    for split in splits:
        listing = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(listing):
            continue
        with open(listing) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        for image_id in ids:
            xml = os.path.join(root, "Annotations", image_id + ".xml")
            try:
                names.update((o.findtext("name") or "").strip() for o in ET.parse(xml).iter("object"))
            except (OSError, ET.ParseError):
                continue  # the reader reports the file
    names.discard("")
    return sorted(names)


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
