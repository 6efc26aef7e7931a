"""COCO metrics (AP at IoU .50:.05:.95, AP50, AP75, small/medium/large, AR), for COCO data (its own
ground truth, areas and crowds included) or any records, through one of three libraries that give
pycocotools' twelve numbers:

- ``hotcoco`` (Rust, pycocotools' API): the default; 75x pycocotools here on 40k detections, 205x on 1M
  (``tools/benchmark.py eval``, docs/benchmarks.md);
- ``faster-coco-eval`` (C++): 5-11x, when installed;
- ``pycocotools``: the reference, and the fallback where hotcoco is not installed.

The tests hold each to pycocotools' numbers (``tests/test_evaluation.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import io

import numpy as np

from core.config import ConfigError

from ..box_ops import xyxy_to_xywh
from ..data.coco import records_to_coco
from .ap import ImageDetections, check_aligned

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR_1", "AR_10", "AR_100", "AR_small",
              "AR_medium", "AR_large")


def coco_xywh(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] xyxy -> [K, 4] float64 xywh to 3 decimals: the boxes of COCO results, as every
    library is given them (a list of dicts or an array), so that each sees the same numbers."""
    return np.round(xyxy_to_xywh(boxes).astype(np.float64), 3)


def detections_to_coco(records: list, dets: list[ImageDetections], category_ids: list[int],
                       image_ids: list[int] | None = None) -> list[dict]:
    """Detections as a COCO results list (``bbox`` xywh, ``category_id`` mapped back; ``image_ids``:
    the ids the images have in the ground truth, default their own)."""
    out = []
    for k, (r, d) in enumerate(zip(records, dets)):
        image_id = r.image_id if image_ids is None else image_ids[k]
        for box, score, label in zip(coco_xywh(d.boxes).tolist(), d.scores.tolist(), d.labels.tolist()):
            out.append({"image_id": image_id, "category_id": category_ids[int(label) - 1],
                        "bbox": box, "score": float(score)})
    return out


COCO_BACKENDS = ("auto", "hotcoco", "faster-coco-eval", "pycocotools")
_MODULES = {"hotcoco": "hotcoco", "faster-coco-eval": "faster_coco_eval", "pycocotools": "pycocotools"}


def coco_backend(name: str = "auto") -> str:
    """The library ``name`` asks for, checked to be installed; ``auto``: hotcoco, else pycocotools."""
    if name == "auto":
        return "hotcoco" if importlib.util.find_spec("hotcoco") else "pycocotools"
    if name not in _MODULES:
        raise ConfigError(f"COCO metrics backend {name!r}: choose one of {', '.join(COCO_BACKENDS)}")
    if importlib.util.find_spec(_MODULES[name]) is None:
        raise ConfigError(f"COCO metrics backend {name}: not installed; pip install {name}, or use auto")
    return name


def _coco_classes(backend: str):
    """``(COCO, COCOeval)`` of a backend."""
    if backend == "hotcoco":
        from hotcoco import COCO, COCOeval
    elif backend == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval


def _results_array(dets: list[ImageDetections], category_ids: list[int], image_ids: list[int]) -> np.ndarray:
    """[N, 7] (image_id, x, y, w, h, score, category_id), the boxes as :func:`coco_xywh` gives them."""
    sizes = [len(d.scores) for d in dets]
    if not sum(sizes):
        return np.zeros((0, 7))
    ids = np.repeat(np.array(image_ids, np.float64), sizes)
    boxes = coco_xywh(np.concatenate([d.boxes for d in dets]))
    scores = np.concatenate([d.scores for d in dets]).astype(np.float64)
    cats = np.asarray(category_ids, np.float64)[np.concatenate([d.labels for d in dets]).astype(np.int64) - 1]
    return np.column_stack([ids, boxes, scores, cats])


def evaluate_coco(records: list, dets: list[ImageDetections], category_ids: list[int], names: list[str],
                  coco_gt=None, backend: str = "auto") -> dict:
    """``coco_gt``: the data set's own ``pycocotools.coco.COCO`` (``COCODet.coco``) when there is one,
    so that its areas and crowd regions are used as they are; else one is built from ``records``.
    ``backend``: one of :data:`COCO_BACKENDS`."""
    backend = coco_backend(backend)
    COCO, COCOeval = _coco_classes(backend)
    check_aligned(records, dets)
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        # the data set's own ids; else 1..N (ILSVRC and VOC name their images, and hotcoco and
        # faster-coco-eval take integer ids only)
        ids = [r.image_id for r in records] if coco_gt is not None else list(range(1, len(records) + 1))
        dataset = coco_gt.dataset if coco_gt is not None else records_to_coco(records, category_ids, names, ids)
        if backend == "pycocotools" and coco_gt is not None:
            gt = coco_gt
        elif backend == "hotcoco":
            gt = COCO(dataset)
        else:
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
        if not any(len(d.scores) for d in dets):
            return {name: 0.0 for name in STAT_NAMES}
        # hotcoco reads the array as it is; the others turn it into the same dicts as a results file
        results = (_results_array(dets, category_ids, ids) if backend == "hotcoco"
                   else detections_to_coco(records, dets, category_ids, ids))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, np.asarray(ev.stats))}
