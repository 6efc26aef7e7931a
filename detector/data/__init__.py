"""Detection data: readers (ILSVRC DET, Pascal VOC, COCO) that yield one sample type, transforms,
batching grouped by aspect ratio, precomputed proposals files (``proposals``), and the miniature
ILSVRC.

The readers are NumPy only; the dataset and transforms (torch, albumentations) load on first use
of their names, so that reading an index (``eval_map.py --detections``) loads neither."""

import importlib

from .coco import COCODet, records_to_coco
from .ilsvrc import MAP_DET, ILSVRCDet, parse_xml
from .sample import DataReport, DetSample, ImageRecord
from .voc import VOC_CLASSES, VOCDet

_LAZY = {"DetBatch": "dataset", "DetectionDataset": "dataset", "GroupedBatchSampler": "dataset",
         "Skipped": "dataset", "collate": "dataset", "load_sample": "dataset", "DetTransform": "transforms",
         "resize_sample": "transforms", "resize_scale": "transforms"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["COCODet", "records_to_coco", "DetBatch", "DetectionDataset", "GroupedBatchSampler", "Skipped", "collate",
           "load_sample", "MAP_DET", "ILSVRCDet", "parse_xml", "DataReport", "DetSample", "ImageRecord",
           "DetTransform", "resize_sample", "resize_scale", "VOC_CLASSES", "VOCDet"]
