"""ILSVRC DET in the real 2015 layout (spec §4), read into :class:`ImageRecord` s without decoding.

    <root>/Data/DET/{train,val,test}/<image_id>.JPEG
    <root>/Annotations/DET/{train,val}/<image_id>.xml     (Pascal-VOC-like; child order varies)
    <root>/ImageSets/DET/train_{1..200}.txt               (<image_id> 1 | 0 | -1)
    <root>/ImageSets/DET/{val,val1,val2,test}.txt         (<image_id> <index>)

Boxes in the XML are inclusive 0-based pixel indices; records hold them as xyxy (``box_ops``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from core.data import read_synsets
from core.errors import DataError

from ..box_ops import clip_xyxy, inclusive_to_xyxy
from .index_cache import cache_path, load_index, save_index, signature
from .sample import CROSSING_ACTION, CROSSING_KIND, DataReport, ImageRecord, empty_boxes

MAP_DET = os.path.join(os.path.dirname(__file__), "map_det.txt")
BLACKLIST_NAME = "ILSVRC2015_det_validation_blacklist.txt"


class AnnotationError(DataError):
    """An annotation file that cannot be parsed; ``detail`` says why, without the path."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


@dataclass
class XmlObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (inclusive indices)
    difficult: bool = False  # Pascal VOC's flag; ILSVRC files have none


def parse_xml(path: str, report: DataReport | None = None) -> tuple[int | None, int | None, list[XmlObject]]:
    """(width, height, objects) of one annotation file, every field found by tag (the real files
    do not keep one child order). A missing size gives None; an object with a missing or
    non-numeric bndbox field is skipped and reported. Unparseable XML is an AnnotationError."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise AnnotationError(path, f"unreadable annotation ({e})") from None

    def number(node, tag: str) -> float | None:
        text = node.findtext(tag) if node is not None else None
        try:
            value = float(text) if text is not None and text.strip() else None
        except ValueError:
            return None
        return value if value is not None and math.isfinite(value) else None  # "nan", "inf" read as floats

    size = root.find("size")
    width, height = number(size, "width"), number(size, "height")
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        coords = [number(bb, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if bb is None or any(c is None for c in coords):
            missing = [t for t, c in zip(("xmin", "ymin", "xmax", "ymax"), coords) if c is None]
            if report is not None:
                report.add("objects without a complete, numeric bndbox", "object skipped", path,
                           f"object {i} ({name or 'no name'}): <bndbox> {'/'.join(missing)} missing, "
                           "empty or not a finite number")
            continue
        objects.append(XmlObject(name, tuple(coords), (obj.findtext("difficult") or "0").strip() == "1"))
    # a size that is not a positive number is no size: the image header gives it
    return (int(width) if width and width >= 1 else None), (int(height) if height and height >= 1 else None), objects


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) from the file header, without decoding the pixels (PIL reads lazily)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:
        return None


def boxes_from_objects(objects: list[XmlObject], width: int, height: int, class_index: dict[str, int],
                       source: str, report: DataReport, origin: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Objects -> (boxes [N, 4] xyxy, labels [N], indices of the kept objects); unknown names
    skipped, inverted boxes and boxes wholly outside the image dropped; each reported with the
    file named. A box crossing the border is kept as annotated (the devkits score it so) and
    reported; training clips it (``detector.data.dataset.load_sample``)."""
    boxes, labels, kept = [], [], []
    for i, obj in enumerate(objects):
        if obj.name not in class_index:
            report.add("objects of unknown classes", "object skipped", source,
                       f"object {i}: class {obj.name!r} is not among the {len(class_index)} synsets")
            continue
        xmin, ymin, xmax, ymax = obj.box
        if xmax < xmin or ymax < ymin:
            report.add("inverted boxes", "dropped", source, f"{obj.name} box {obj.box} has max < min")
            continue
        b = inclusive_to_xyxy(np.array([obj.box]), origin)
        clipped = clip_xyxy(b, height, width)
        if not np.array_equal(b, clipped):
            if clipped[0, 2] <= clipped[0, 0] or clipped[0, 3] <= clipped[0, 1]:
                report.add("boxes outside the image", "dropped", source,
                           f"{obj.name} box {obj.box} is outside the {width}x{height} image")
                continue
            report.add(CROSSING_KIND, CROSSING_ACTION, source,
                       f"{obj.name} box {obj.box} crosses the border of the {width}x{height} image")
        boxes.append(b[0])
        labels.append(class_index[obj.name])
        kept.append(i)
    if not boxes:
        return (*empty_boxes()[:2], kept)
    return np.stack(boxes).astype(np.float32), np.array(labels, np.int64), kept


def read_annotation(xml_path: str, image_path: str, report: DataReport,
                    optional: bool = False) -> tuple[int, int, list[XmlObject]] | None:
    """(width, height, objects) of an image: from its XML, the size from the image header when the
    XML has none or (``optional``, ILSVRC negatives) there is no XML. None, reported, when it
    cannot be had."""
    objects: list[XmlObject] = []
    width = height = None
    if os.path.isfile(xml_path) or not optional:
        try:
            width, height, objects = parse_xml(xml_path, report)
        except AnnotationError as e:
            report.add("unreadable annotations", "image skipped", xml_path, e.detail)
            return None
    if width is None or height is None:
        size = image_size(image_path)
        source = xml_path if os.path.isfile(xml_path) else image_path
        if size is None:
            report.add("images without a size or a readable file", "image skipped", source,
                       "no <size> and the image cannot be opened")
            return None
        if os.path.isfile(xml_path):
            report.add("annotations without a size", "read from the image header", xml_path,
                       f"no positive <size><width>/<height>; took {size[0]}x{size[1]} from the image")
        width, height = size
    return width, height, objects


def read_blacklist(path: str, class_index: dict[str, int]) -> dict[int, set[int]]:
    """``image_index wnid`` lines -> {image_index: {label, ...}} (pairs not scored; spec §5)."""
    out: dict[int, set[int]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in class_index:
                raise DataError(f"{path}:{n}: expected 'image_index wnid' with a known wnid, got {line.strip()!r}")
            out.setdefault(int(parts[0]), set()).add(class_index[parts[1]])
    return out


def _read_list(path: str) -> list[list[str]]:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such image list")
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


class ILSVRCDet:
    """The index of one ILSVRC DET split: ``records`` (one :class:`ImageRecord` per image),
    ``classes`` (wnids, label = position + 1), ``class_names``, and the parse ``report``.

    Training (``split="train"``): the images positive for any class in ``train_{k}.txt``, plus
    ``negatives`` (a share, 0..1, chosen by ``seed``) of the images listed only as negative;
    those usually have no XML and get their size from the file header. Other splits read
    ``<split>.txt`` (``val``, or ``val1``/``val2`` from ``tools/make_val_split.py``) with the
    ``val`` annotations; the blacklist marks (image, class) pairs as ignored."""

    def __init__(self, root: str, split: str = "train", synsets: str = MAP_DET, negatives: float = 0.0,
                 blacklist: str | None = None, seed: int = 0, cache: str | None = None) -> None:
        self.root, self.split = root, split
        table = read_synsets(synsets)
        self.classes = [w for w, _, _ in sorted(table, key=lambda t: t[1])]
        self.class_names = [n for _, _, n in sorted(table, key=lambda t: t[1])]
        self.det_ids = sorted(i for _, i, _ in table)  # label k <-> DET ID det_ids[k - 1]
        self.class_index = {w: k + 1 for k, w in enumerate(self.classes)}
        self.report = DataReport()
        sets = os.path.join(root, "ImageSets", "DET")
        if not os.path.isdir(sets):
            raise DataError(f"no ILSVRC DET at {root} (looked for {sets}): point data.root=... at the folder holding "
                            "Data/, Annotations/ and ImageSets/, or make the miniature: python tools/make_toy_data.py")
        if split == "train":
            entries = self._train_entries(sets, negatives, seed)
            ann_split = "train"
            lists = [os.path.join(sets, f"train_{k}.txt") for k in range(1, len(self.classes) + 1)]
        else:
            listing = os.path.join(sets, f"{split}.txt")
            lists = [listing]
            if split in ("val1", "val2") and not os.path.isfile(listing):
                raise DataError(f"{listing}: no such image list; make val1/val2 once with: "
                                f"python tools/make_val_split.py {root}")
            rows = _read_list(listing)
            entries = [(r[0], int(r[1]) if len(r) > 1 and r[1].isdigit() else -1) for r in rows]
            ann_split = "val" if split.startswith("val") else split
        self.blacklist = read_blacklist(blacklist, self.class_index) if blacklist and split != "train" else {}
        data_split = "val" if split.startswith("val") else split
        files = [(os.path.join(root, "Annotations", "DET", ann_split, image_id + ".xml"),
                  os.path.join(root, "Data", "DET", data_split, image_id + ".JPEG")) for image_id, _ in entries]
        if cache:  # the parsed split, unless a file it was read from changed (index_cache)
            path = cache_path(cache, root, split, synsets, blacklist, negatives, seed if split == "train" else 0)
            sig = signature([*lists, synsets, *([blacklist] if blacklist else [])], files)
            found = load_index(path, sig)
            if found is not None:
                self.records, self.report = found
                return
        self.records = []
        for (image_id, index), (xml_path, image_path) in zip(entries, files):
            rec = self._record(image_id, index, image_path, xml_path)
            if rec is not None:
                self.records.append(rec)
        if cache:
            save_index(path, sig, self.records, self.report)

    def _train_entries(self, sets: str, negatives: float, seed: int) -> list[tuple[str, int]]:
        positive: dict[str, None] = {}
        listed: dict[str, None] = {}
        for k in range(1, len(self.classes) + 1):
            path = os.path.join(sets, f"train_{k}.txt")
            if not os.path.isfile(path):
                continue
            for n, row in enumerate(_read_list(path), 1):
                if len(row) != 2 or row[1] not in ("1", "0", "-1"):
                    raise DataError(f"{path}:{n}: expected '<image_id> 1|0|-1', got {' '.join(row)!r}")
                listed[row[0]] = None
                if row[1] == "1":
                    positive[row[0]] = None
        if not listed:
            raise DataError(f"{sets}: no train_<k>.txt lists")
        negative = [i for i in listed if i not in positive]
        rng = np.random.default_rng(seed)
        take = sorted(rng.permutation(len(negative))[: round(negatives * len(negative))].tolist())
        return [(i, -1) for i in positive] + [(negative[j], -1) for j in take]

    def _record(self, image_id: str, index: int, image_path: str, xml_path: str) -> ImageRecord | None:
        source = xml_path if os.path.isfile(xml_path) else image_path
        found = read_annotation(xml_path, image_path, self.report, optional=True)
        if found is None:
            return None
        width, height, objects = found
        if self.split != "train" and source == image_path:  # training negatives have none; every val image has one
            self.report.add("images without an annotation file", "read as having no objects", image_path,
                            f"no {xml_path}")
        boxes, labels, _ = boxes_from_objects(objects, width, height, self.class_index, source, self.report)
        ignore = np.zeros(len(labels), bool)
        black = self.blacklist.get(index, set())
        if black:
            ignore = np.isin(labels, sorted(black))
        return ImageRecord(image_path, image_id, width, height, boxes, labels, ignore, source=source, index=index,
                           ignore_classes=tuple(sorted(black)))
