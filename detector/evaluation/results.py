"""Results files, both ways: ILSVRC submission lines, COCO results JSON and Pascal VOC's per-class
files.

ILSVRC (spec §4): one detection per line, ``<image_index> <DET_ID> <confidence> <xmin> <ymin>
<xmax> <ymax>``, where ``image_index`` is the number in the split's list file and the box is in
inclusive 0-based pixel indices. COCO: a JSON list of ``{"image_id", "category_id",
"bbox": [x, y, w, h], "score"}``. VOC (the devkit's ``comp4_det_<split>_<class>.txt``, what
``VOCevaldet.m`` reads): one file per class, lines ``<image_id> <confidence> <xmin> <ymin> <xmax>
<ymax>`` in inclusive 1-based pixels. Reading checks everything and names the line (or entry) of
the first problem. Scores and boxes are read as float64, so a file keeps its precision to the AP;
scores are written with every digit their type holds (ties in a file are ties in memory).
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import warnings

import numpy as np

from core.atomic import write_text_atomic
from core.errors import DataError

from ..box_ops import inclusive_to_xyxy, xywh_to_xyxy, xyxy_to_inclusive
from .ap import ImageDetections
from .coco import coco_xywh


class ResultsError(DataError):
    """A results file that cannot be scored; the message names the file and the line."""


def _collect(n_images: int, rows: list[tuple[int, int, float, list[float]]]) -> list[ImageDetections]:
    """Row tuples ``(image position, label, score, box)`` -> one ImageDetections per image."""
    if not rows:
        return [ImageDetections.empty() for _ in range(n_images)]
    pos, labels, scores, boxes = zip(*rows)
    return _collect_arrays(n_images, np.array(pos, np.int64), np.array(labels, np.int64), np.array(scores, np.float64),
                           np.array(boxes, np.float64).reshape(-1, 4))


def score_text(score: np.floating | float) -> str:
    """The shortest decimal that reads back as the same score of its type (float32 from a model,
    float64 from a file), so that writing and reading keep every score's order and ties."""
    return np.format_float_positional(score, unique=True, trim="-")


def write_ilsvrc_results(path: str, records: list, dets: list[ImageDetections], det_ids: list[int]) -> None:
    """``det_ids[label - 1]`` is the DET ID written for ``label`` (1..200 for the real data)."""
    lines = []
    for r, d in zip(records, dets):
        if r.index < 0:
            raise ValueError(f"{r.image_id}: no image index (ILSVRC results need the split's list numbers)")
        for box, score, label in zip(xyxy_to_inclusive(d.boxes).tolist(), d.scores, d.labels.tolist()):
            lines.append(f"{r.index} {det_ids[int(label) - 1]} {score_text(score)} "
                         + " ".join(f"{v:.2f}" for v in box))
    write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))


def read_ilsvrc_results(path: str, records: list, det_ids: list[int]) -> list[ImageDetections]:
    """Detections per record, from submission lines; boxes back to xyxy. A well-formed file is read
    as one array (20k images / 100k lines in about 0.1 s); any other goes line by line, which
    names the first bad line."""
    if not os.path.isfile(path):
        raise ResultsError(f"{path}: no such results file")
    fast = _ilsvrc_array(_numeric_lines(path, 7), records, det_ids)
    if fast is not None:
        return fast
    position = {r.index: i for i, r in enumerate(records)}
    label_of = {d: k + 1 for k, d in enumerate(det_ids)}
    rows = []
    for n, parts, score, box in _result_lines(path, "<image_index> <DET_ID> <confidence> <xmin> <ymin> <xmax> <ymax>"):
        try:
            index, det_id = int(parts[0]), int(parts[1])
        except ValueError:
            raise ResultsError(f"{path}:{n}: not numbers: {' '.join(parts)!r}") from None
        if index not in position:
            raise ResultsError(f"{path}:{n}: image index {index} is not in the split being scored")
        if det_id not in label_of:
            raise ResultsError(f"{path}:{n}: class id {det_id} is not one of the {len(det_ids)} classes")
        rows.append((position[index], label_of[det_id], score,
                     inclusive_to_xyxy(np.array([box]), dtype=np.float64)[0].tolist()))
    return _collect(len(records), rows)


def _numeric_lines(path: str, width: int) -> np.ndarray | None:
    """The file as a [N, width] float64 array when every non-empty line is ``width`` finite numbers
    (NumPy's C reader), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "empty input file"
            table = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        return None
    if table.size == 0:
        return np.zeros((0, width))
    return table if table.shape[1] == width and np.isfinite(table).all() else None


def _ilsvrc_array(table: np.ndarray | None, records: list, det_ids: list[int]) -> list[ImageDetections] | None:
    """Submission lines [N, 7] -> detections per record, or None where some line is not valid
    (an unknown image or class, a fractional id, an inverted box)."""
    if table is None:
        return None
    index, det_id, box = table[:, 0], table[:, 1], table[:, 3:]
    if (index != np.floor(index)).any() or (det_id != np.floor(det_id)).any() or (box[:, 2:] < box[:, :2]).any():
        return None
    known, order = np.unique(np.array([r.index for r in records], np.int64), return_index=True)
    ids = np.asarray(det_ids, np.int64)
    id_order = np.argsort(ids)
    pos = np.searchsorted(known, index).clip(max=max(len(known) - 1, 0))
    lab = np.searchsorted(ids[id_order], det_id).clip(max=len(ids) - 1)
    if len(table) and (not len(known) or (known[pos] != index).any() or (ids[id_order][lab] != det_id).any()):
        return None
    return _collect_arrays(len(records), order[pos] if len(known) else pos, id_order[lab] + 1, table[:, 2],
                           inclusive_to_xyxy(box, dtype=np.float64))


def _collect_arrays(n_images: int, position: np.ndarray, label: np.ndarray, score: np.ndarray,
                    box: np.ndarray) -> list[ImageDetections]:
    """Rows [K] (image position, label, score, box [K, 4]) -> one ImageDetections per image, each in
    file order."""
    by_image = np.argsort(position, kind="stable")
    cuts = np.searchsorted(position[by_image], np.arange(n_images + 1))
    label, score, box = label[by_image].astype(np.int64), score[by_image], box[by_image]
    return [ImageDetections(box[a:b], score[a:b], label[a:b]) if b > a else ImageDetections.empty()
            for a, b in zip(cuts[:-1], cuts[1:])]


def write_coco_results(path: str, records: list, dets: list[ImageDetections], category_ids: list[int]) -> None:
    out = []
    for r, d in zip(records, dets):
        for box, score, label in zip(coco_xywh(d.boxes).tolist(), d.scores, d.labels.tolist()):
            out.append({"image_id": r.image_id, "category_id": category_ids[int(label) - 1],
                        "bbox": box, "score": float(score_text(score))})
    write_text_atomic(path, json.dumps(out))


def read_coco_results(path: str, records: list, category_ids: list[int]) -> list[ImageDetections]:
    if not os.path.isfile(path):
        raise ResultsError(f"{path}: no such results file")
    try:
        with open(path) as f:
            entries = json.load(f)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(entries, list):
        raise ResultsError(f"{path}: a COCO results file is a JSON list of detections")
    position = {r.image_id: i for i, r in enumerate(records)}
    label_of = {c: k + 1 for k, c in enumerate(category_ids)}
    rows = []
    for n, e in enumerate(entries):
        where = f"{path}: entry {n}"
        if not isinstance(e, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(e):
            raise ResultsError(f"{where}: needs image_id, category_id, bbox and score, got {e!r}"[:300])
        if e["image_id"] not in position:
            raise ResultsError(f"{where}: image_id {e['image_id']!r} is not in the split being scored")
        if e["category_id"] not in label_of:
            raise ResultsError(f"{where}: category_id {e['category_id']!r} is not a category of the data set")
        bbox = e["bbox"]
        if (not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox)
                or not isinstance(e["score"], (int, float))):
            raise ResultsError(f"{where}: bbox must be [x, y, w, h] numbers and score a number")
        if not math.isfinite(e["score"]) or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise ResultsError(f"{where}: score or bbox is not finite, or the box has a negative size")
        rows.append((position[e["image_id"]], label_of[e["category_id"]], float(e["score"]),
                     xywh_to_xyxy(np.array([bbox]), dtype=np.float64)[0].tolist()))
    return _collect(len(records), rows)


def class_file_name(name: str) -> str:
    """A class name as the tail of a VOC results file name (spaces and the like become ``_``)."""
    return re.sub(r"[^\w.-]+", "_", name)


def write_voc_results(folder: str, records: list, dets: list[ImageDetections], classes: list[str],
                      split: str, prefix: str = "comp4") -> None:
    """One ``<prefix>_det_<split>_<class>.txt`` per class in ``folder`` (comp4: any training data)."""
    lines: list[list[str]] = [[] for _ in classes]
    for r, d in zip(records, dets):
        for box, score, label in zip(xyxy_to_inclusive(d.boxes, origin=1).tolist(), d.scores, d.labels.tolist()):
            lines[int(label) - 1].append(f"{r.image_id} {score_text(score)} " + " ".join(f"{v:.2f}" for v in box))
    for name, rows in zip(classes, lines):
        write_text_atomic(os.path.join(folder, f"{prefix}_det_{split}_{class_file_name(name)}.txt"),
                          "\n".join(rows) + ("\n" if rows else ""))


def voc_results_files(source: str) -> list[str]:
    """The per-class files ``source`` names: a folder (its ``*_det_*.txt``), a glob, or one file."""
    if os.path.isdir(source):
        found = sorted(glob.glob(os.path.join(source, "*_det_*.txt")))
    elif glob.has_magic(source):
        found = sorted(glob.glob(source))
    else:
        found = [source] if os.path.isfile(source) else []
    if not found:
        raise ResultsError(f"{source}: no VOC results files (<comp>_det_<split>_<class>.txt) there")
    return found


def read_voc_results(source: str, records: list, classes: list[str]) -> list[ImageDetections]:
    """Detections per record from VOC per-class files (a folder, a glob or one file); the class is
    the file name's tail after ``_det_<split>_``; boxes back from 1-based inclusive pixels."""
    position = {str(r.image_id): i for i, r in enumerate(records)}
    by_tail = {class_file_name(c): k + 1 for k, c in enumerate(classes)}
    longest_first = sorted(by_tail.items(), key=lambda t: -len(t[0]))  # "traffic_light" before "light"
    rows = []
    for path in voc_results_files(source):
        stem = os.path.splitext(os.path.basename(path))[0]
        label = next((lab for tail, lab in longest_first
                      if stem.endswith("_" + tail) and "_det_" in stem[:-len(tail)]), None)
        if label is None:
            raise ResultsError(f"{path}: not <comp>_det_<split>_<class>.txt for a class of the data set "
                               f"(classes: {', '.join(list(by_tail)[:5])}{' ...' if len(by_tail) > 5 else ''})")
        rows += _voc_rows(path, label, position)
    return _collect(len(records), rows)


def _voc_rows(path: str, label: int, position: dict[str, int]) -> list[tuple[int, int, float, list[float]]]:
    rows = []
    for n, parts, score, box in _result_lines(path, "<image_id> <confidence> <xmin> <ymin> <xmax> <ymax>"):
        if parts[0] not in position:
            raise ResultsError(f"{path}:{n}: image {parts[0]!r} is not in the split being scored")
        rows.append((position[parts[0]], label, score,
                     inclusive_to_xyxy(np.array([box]), origin=1, dtype=np.float64)[0].tolist()))
    return rows


def _result_lines(path: str, fields: str):
    """``(line number, fields, score, box)`` of each non-empty line of a results file whose lines are
    ``fields`` (the score fifth from the end, then the box: ILSVRC's and VOC's). A line of another
    length, with a field that is not a number, a non-finite number or an inverted box is a
    :class:`ResultsError` naming the file and line."""
    width = len(fields.split())
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != width:
                raise ResultsError(f"{path}:{n}: expected {width} fields '{fields}', got {len(parts)}: "
                                   f"{line.strip()!r}")
            try:
                score, box = float(parts[-5]), [float(v) for v in parts[-4:]]
            except ValueError:
                raise ResultsError(f"{path}:{n}: not numbers: {line.strip()!r}") from None
            if not math.isfinite(score) or not all(math.isfinite(v) for v in box):
                raise ResultsError(f"{path}:{n}: score or box is not a finite number: {line.strip()!r}")
            if box[2] < box[0] or box[3] < box[1]:
                raise ResultsError(f"{path}:{n}: box has xmax < xmin or ymax < ymin: {line.strip()!r}")
            yield n, parts, score, box
