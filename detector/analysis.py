"""Where a detector's mAP goes, from its detections alone (no model run): a confusion matrix over
the classes and background, and a TIDE-style breakdown of the AP lost to each kind of error.

Each detection (at or above ``min_score``) is given one type, from its overlaps with the objects of
its image, in descending score order (Bolya et al., TIDE, ECCV 2020, section 3):

- ``tp``: IoU >= 0.5 with a not-yet-taken object of its class;
- ``dupe``: IoU >= 0.5 with an object of its class that a higher-scored detection took;
- ``cls``: IoU >= 0.5 with an object of another class (and not a tp or dupe);
- ``loc``: 0.1 <= IoU < 0.5 with an object of its class;
- ``both``: 0.1 <= IoU < 0.5 with an object of another class only;
- ``bkg``: IoU < 0.1 with every object.

The breakdown fixes the errors one type after another, in that order (``cls``, ``loc``, ``both``,
``dupe``, ``bkg``), recomputing the mAP after each: a ``cls`` detection takes its object's class,
a ``loc`` or ``both`` one its object's box (and class), ``dupe`` and ``bkg`` ones are removed.
``miss`` is what is left: the objects no detection found, and any true detections still ranked
below a false one. Fixed cumulatively, the parts add up to exactly 100 - mAP (TIDE fixes each type
alone, so its parts do not add up).
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from .box_ops import iou_xyxy
from .evaluation import ImageDetections, evaluate_ilsvrc, evaluate_voc

TYPES = ("tp", "dupe", "cls", "loc", "both", "bkg")
FIXES = ("cls", "loc", "both", "dupe", "bkg")


def detection_types(record, d: ImageDetections, fg: float = 0.5, bg: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """One image: ``(type index into TYPES [K], the object each refers to [K], -1 for bkg)``, the
    detections taken in descending score order (ties in given order)."""
    k = len(d.scores)
    kind, target = np.full(k, TYPES.index("bkg")), np.full(k, -1)
    labels = np.asarray(record.labels)
    if not k or not len(labels):
        return kind, target
    iou = iou_xyxy(d.boxes, record.boxes)  # [K, M]
    same = d.labels[:, None] == labels[None, :]  # [K, M]
    taken = np.zeros(len(labels), bool)
    for i in np.argsort(-d.scores, kind="stable"):
        own = np.where(same[i], iou[i], -1.0)
        free = np.where(taken, -1.0, own)
        other = np.where(same[i], -1.0, iou[i])
        if free.max() >= fg:
            j = int(free.argmax())
            taken[j] = True
            kind[i], target[i] = TYPES.index("tp"), j
        elif own.max() >= fg:
            kind[i], target[i] = TYPES.index("dupe"), int(own.argmax())
        elif other.max() >= fg:
            kind[i], target[i] = TYPES.index("cls"), int(other.argmax())
        elif own.max() >= bg:
            kind[i], target[i] = TYPES.index("loc"), int(own.argmax())
        elif other.max() >= bg:
            kind[i], target[i] = TYPES.index("both"), int(other.argmax())
    return kind, target


def confusion_matrix(records: list, dets: list[ImageDetections], num_classes: int, min_score: float = 0.3,
                     fg: float = 0.5) -> np.ndarray:
    """[C + 1, C + 1] counts: row = the object's class (0: no object, a detection on background or
    a duplicate), column = the detection's class (0: no detection, a missed object). A detection at
    IoU >= ``fg`` with an object is counted against that object (its own class first)."""
    m = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for r, d in zip(records, dets):
        keep = d.scores >= min_score
        d = ImageDetections(d.boxes[keep], d.scores[keep], d.labels[keep])
        kind, target = detection_types(r, d, fg=fg)
        labels = np.asarray(r.labels)
        found = np.zeros(len(labels), bool)
        for t, j, lab in zip(kind, target, d.labels):
            if TYPES[t] in ("tp", "cls"):
                m[labels[j], lab] += 1
                found[j] = True
            else:
                m[0, lab] += 1
        for lab in labels[~found]:
            m[lab, 0] += 1
    return m


def _fixed(records: list, dets: list[ImageDetections], types: list[tuple], fixes: set[str]) -> list[ImageDetections]:
    out = []
    for r, d, (kind, target) in zip(records, dets, types):
        names = np.array(TYPES)[kind]
        keep = ~np.isin(names, [f for f in ("dupe", "bkg") if f in fixes])
        boxes, labels = d.boxes.copy(), d.labels.copy()
        for i in np.flatnonzero(np.isin(names, [f for f in ("cls", "loc", "both") if f in fixes])):
            labels[i] = r.labels[target[i]]
            if names[i] != "cls":
                boxes[i] = r.boxes[target[i]]
        out.append(ImageDetections(boxes[keep], d.scores[keep], labels[keep]))
    return out


def error_breakdown(records: list, dets: list[ImageDetections], num_classes: int, protocol: str = "voc") -> dict:
    """``{"map", "cls", "loc", "both", "dupe", "bkg", "miss"}`` in mAP points (0-100): the mAP,
    then what fixing each type adds, cumulatively; the parts sum to 100 - map."""
    score = {"voc": lambda d: evaluate_voc(records, d, num_classes)["map"],
             "voc07": lambda d: evaluate_voc(records, d, num_classes, use_07_metric=True)["map"],
             "ilsvrc": lambda d: evaluate_ilsvrc(records, d, num_classes)["map"]}[protocol]
    types = [detection_types(r, d) for r, d in zip(records, dets)]
    out = {"map": 100 * score(dets)}
    done: set[str] = set()
    last = out["map"]
    for f in FIXES:
        done.add(f)
        now = 100 * score(_fixed(records, dets, types, done))
        out[f], last = now - last, now
    out["miss"] = 100 - last
    return out


def image_errors(records: list, dets: list[ImageDetections], min_score: float = 0.3) -> np.ndarray:
    """[N] per image: its detections at ``min_score`` that are not true positives, plus its objects
    that none of them found (what a person counts as wrong in the drawn image)."""
    out = np.zeros(len(records), np.int64)
    for n, (r, d) in enumerate(zip(records, dets)):
        keep = d.scores >= min_score
        kind, _ = detection_types(r, ImageDetections(d.boxes[keep], d.scores[keep], d.labels[keep]))
        tp = int((kind == TYPES.index("tp")).sum())
        out[n] = (len(kind) - tp) + (len(r.labels) - tp)
    return out


def save_confusion(folder: str, m: np.ndarray, names: list[str]) -> None:
    """``confusion.csv`` (rows: objects' classes, columns: detections' classes; "none" is the
    background row and the missed column) and ``confusion.png``."""
    from matplotlib.figure import Figure

    from core.atomic import save_figure_atomic, write_text_atomic

    labels = ["none", *names]
    text = io.StringIO()
    rows = csv.writer(text)  # quoted: ILSVRC's class names hold commas
    rows.writerow(["object/detection", *labels])
    rows.writerows([labels[i], *m[i].tolist()] for i in range(len(m)))
    write_text_atomic(os.path.join(folder, "confusion.csv"), text.getvalue())
    size = 3 + 0.35 * len(labels)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(np.log1p(m), cmap="Blues")
    if len(labels) <= 40:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for i, j in zip(*np.nonzero(m)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=6)
    ax.set(xlabel="detected as (none: missed)", ylabel="object (none: no object)")
    fig.tight_layout()
    save_figure_atomic(fig, os.path.join(folder, "confusion.png"))


def save_side_by_side(path: str, record, d: ImageDetections, names: list[str], min_score: float) -> bool:
    """The image with its objects (left) and its detections at ``min_score`` (right), as PNG;
    False if the image cannot be read."""
    from core.atomic import write_png_atomic
    from core.data import read_image
    from core.errors import BadImageError

    from .visualize import draw_boxes, enlarged

    try:
        img = read_image(record.path)
    except BadImageError:
        return False
    img, f = enlarged(img)
    keep = d.scores >= min_score
    left = draw_boxes(img, np.asarray(record.boxes) * f, np.asarray(record.labels), names)
    right = draw_boxes(img, d.boxes[keep] * f, d.labels[keep], names, scores=d.scores[keep])
    write_png_atomic(path, np.concatenate([left, np.full((left.shape[0], 4, 3), 255, np.uint8), right], 1))
    return True
