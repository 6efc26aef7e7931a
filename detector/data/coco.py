"""COCO-format JSON: category ids mapped to contiguous labels 1..C (sorted by id) and back; crowd
regions kept as ignored; ``bbox`` is xywh in continuous pixels.

Every image and annotation is checked before pycocotools sees it, the way the ILSVRC reader
checks its XML: what is wrong is skipped (or fixed) and reported with the file and the id, and
pycocotools is handed only what passed, so the records (training, ILSVRC/VOC scoring) and the
``COCO`` object (COCO scoring) hold the same objects. A file that is not COCO at all is one
:class:`DataError`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

import numpy as np

from core.errors import DataError

from ..box_ops import clip_xyxy, xywh_to_xyxy, xyxy_to_xywh
from .ilsvrc import image_size
from .sample import CROSSING_ACTION, CROSSING_KIND, DataReport, ImageRecord, empty_boxes


def _number(v) -> bool:
    """A real JSON number (``true`` is not one; NaN and infinities are not finite)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_id(v) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def read_coco_json(path: str) -> dict:
    """The top level of a COCO file: a DataError unless it is a JSON object with ``images`` and
    ``categories`` lists (``annotations`` may be absent: test-dev files have none)."""
    if not os.path.isfile(path):
        raise DataError(f"no COCO annotations at {path}: point data.root=... (and data.coco_annotations=...) at "
                        "instances_<split>.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a JSON file ({e}); point data.coco_annotations=... at a COCO "
                        "instances_<split>.json") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a COCO file is a JSON object with images, annotations and categories, "
                        f"this one is a {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: no '{key}' list; not a COCO instances file")
    if "annotations" in data and not isinstance(data["annotations"], list):
        raise DataError(f"{path}: 'annotations' is a {type(data['annotations']).__name__}, not a list")
    return data


def check_categories(path: str, categories: list) -> list[dict]:
    """The categories sorted by id; one without an integer id and a name, or a repeated id, is
    an error (labels are numbered from them)."""
    seen: set[int] = set()
    for n, c in enumerate(categories):
        if not (isinstance(c, dict) and isinstance(c.get("id"), int) and not isinstance(c["id"], bool)
                and isinstance(c.get("name"), str)):
            raise DataError(f"{path}: categories[{n}] needs an integer 'id' and a 'name', got {c!r:.80}")
        if c["id"] in seen:
            raise DataError(f"{path}: category id {c['id']} appears twice in 'categories'")
        seen.add(c["id"])
    if not categories:
        raise DataError(f"{path}: 'categories' is empty")
    return sorted(categories, key=lambda c: c["id"])


class COCODet:
    def __init__(self, ann_file: str, image_dir: str) -> None:
        from pycocotools.coco import COCO

        data = read_coco_json(ann_file)
        self.ann_file, self.image_dir = ann_file, image_dir
        cats = check_categories(ann_file, data["categories"])
        self.category_ids = [c["id"] for c in cats]  # label k <-> category_ids[k - 1]
        self.classes = [c["name"] for c in cats]
        self.class_names = list(self.classes)
        self.label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.report = DataReport()
        if "annotations" not in data:
            self.report.add("files without annotations", "images loaded unannotated (a test-dev style file)",
                            ann_file, "no 'annotations' key: nothing to train on or to score against")
        images = self._images(data["images"])
        anns = self._annotations(data.get("annotations", []), images)
        self.coco = COCO()  # pycocotools' own index over what passed the checks (COCO scoring)
        self.coco.dataset = {**data, "images": list(images.values()), "annotations": anns}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.coco.createIndex()
        by_image: dict = {}
        for a in anns:
            by_image.setdefault(a["image_id"], []).append(a)
        order = sorted(images, key=lambda i: (isinstance(i, str), i))
        self.records = [self._record(images[i], by_image.get(i, [])) for i in order]

    def _images(self, entries: list) -> dict:
        """``{id: image entry}`` of the images that can be used; a size that is missing or not
        positive is read from the image file's header."""
        out: dict = {}
        for n, img in enumerate(entries):
            where = f"images[{n}]"
            if not isinstance(img, dict) or not _is_id(img.get("id")) or not isinstance(img.get("file_name"), str):
                self.report.add("image entries without an id or a file_name", "image skipped", self.ann_file,
                                f"{where}: {img!r:.80}")
                continue
            if img["id"] in out:
                self.report.add("repeated image ids", "image skipped", self.ann_file,
                                f"{where}: image id {img['id']} appears twice")
                continue
            w, h = img.get("width"), img.get("height")
            if not (_number(w) and _number(h) and w >= 1 and h >= 1):
                path = os.path.join(self.image_dir, img["file_name"])
                size = image_size(path)
                if size is None:
                    self.report.add("images without a size or a readable file", "image skipped", self.ann_file,
                                    f"image {img['id']}: width/height {w!r}/{h!r} and {path} cannot be opened")
                    continue
                self.report.add("images without a valid size", "read from the image header", self.ann_file,
                                f"image {img['id']}: width/height {w!r}/{h!r}; took {size[0]}x{size[1]} from {path}")
                w, h = size
            out[img["id"]] = {**img, "width": int(w), "height": int(h)}
        return out

    def _annotations(self, entries: list, images: dict) -> list[dict]:
        """The annotations that pass :meth:`_problem`, with a box area where theirs is unusable."""
        kept, ids = [], set()
        for n, ann in enumerate(entries):
            problem = self._problem(ann, n, images, ids)
            if problem is not None:
                kind, action, detail = problem
                self.report.add(kind, action, self.ann_file, detail)
                if action != CROSSING_ACTION:  # a border-crossing box is reported and kept
                    continue
            ids.add(ann["id"])
            area = ann.get("area")
            if not (_number(area) and area >= 0):
                box_area = float(ann["bbox"][2] * ann["bbox"][3])
                self.report.add("annotations without a valid area", "box area used", self.ann_file,
                                f"annotation {ann['id']}: area {area!r}, took {box_area:g}")
                ann = {**ann, "area": box_area}
            kept.append(ann)
        return kept

    def _problem(self, ann, n: int, images: dict, ids: set) -> tuple[str, str, str] | None:
        """``(kind, action, detail)`` of what is wrong with annotation ``n``; None when nothing is.
        A box crossing the image border is kept (``CROSSING_ACTION``), as annotated."""
        if not isinstance(ann, dict) or not _is_id(ann.get("id")):
            return "annotations without an id", "skipped", f"annotations[{n}]: {ann!r:.80}"
        a = f"annotation {ann['id']}"
        if ann["id"] in ids:
            return "repeated annotation ids", "skipped", f"{a} appears twice"
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            return "annotations of unknown images", "skipped", f"{a}: image id {ann.get('image_id')!r} is not in images"
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in self.label_of:
            return "annotations of unknown categories", "skipped", f"{a}: category {ann.get('category_id')!r}"
        if ann.get("iscrowd", 0) not in (0, 1):
            return "iscrowd not 0 or 1", "skipped", f"{a}: iscrowd {ann.get('iscrowd')!r}"
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            return "boxes that are not 4 numbers", "skipped", f"{a}: bbox {box!r:.80}"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return "non-numeric boxes", "skipped", f"{a}: bbox {box!r:.80}"
        if not all(math.isfinite(v) for v in box):
            return "non-finite boxes", "skipped", f"{a}: bbox {box!r:.80}"
        if box[2] <= 0 or box[3] <= 0:
            return "empty or negative boxes", "skipped", f"{a}: bbox {box} has width or height <= 0"
        img = images[ann["image_id"]]
        b = xywh_to_xyxy(np.array([box]))
        clipped = clip_xyxy(b, img["height"], img["width"])
        size = f"{img['width']}x{img['height']}"
        if clipped[0, 2] <= clipped[0, 0] or clipped[0, 3] <= clipped[0, 1]:
            return "boxes outside the image", "skipped", f"{a}: bbox {box} is outside the {size} image"
        if not np.allclose(b, clipped):
            return CROSSING_KIND, CROSSING_ACTION, f"{a}: bbox {box} crosses the border of the {size} image"
        return None

    def _record(self, img: dict, anns: list[dict]) -> ImageRecord:
        if anns:
            arrays = (xywh_to_xyxy(np.array([a["bbox"] for a in anns])),
                      np.array([self.label_of[a["category_id"]] for a in anns], np.int64),
                      np.array([bool(a.get("iscrowd", 0)) for a in anns], bool))
        else:
            arrays = empty_boxes()
        return ImageRecord(os.path.join(self.image_dir, img["file_name"]), img["id"], img["width"], img["height"],
                           *arrays, source=self.ann_file)


def records_to_coco(records: list[ImageRecord], category_ids: list[int], names: list[str],
                    image_ids: list[int] | None = None) -> dict:
    """Ground truth back to COCO JSON: labels to category ids, ignore to iscrowd, xyxy to xywh;
    ``image_ids``: the ids to give the images (default: their own)."""
    images, anns = [], []
    for k, r in enumerate(records):
        image_id = r.image_id if image_ids is None else image_ids[k]
        images.append({"id": image_id, "width": r.width, "height": r.height, "file_name": os.path.basename(r.path)})
        for box, label, crowd in zip(xyxy_to_xywh(r.boxes).tolist(), r.labels.tolist(), r.ignore.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category_ids[label - 1],
                         "bbox": [round(v, 2) for v in box], "area": round(box[2] * box[3], 2), "iscrowd": int(crowd)})
    cats = [{"id": cid, "name": n} for cid, n in zip(category_ids, names)]
    return {"images": images, "annotations": anns, "categories": cats}
