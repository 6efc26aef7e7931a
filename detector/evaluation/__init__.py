"""Evaluation protocols: ILSVRC DET (the paper's), Pascal VOC 2007/2010+, and COCO via pycocotools."""

from ..box_ops import iou_xyxy
from .ap import ImageDetections, ap_11_points, ap_all_points
from .coco import evaluate_coco
from .ilsvrc import evaluate_ilsvrc, object_thresholds
from .results import (
    ResultsError,
    read_coco_results,
    read_ilsvrc_results,
    read_voc_results,
    write_coco_results,
    write_ilsvrc_results,
    write_voc_results,
)
from .voc import evaluate_voc

__all__ = ["ImageDetections", "ap_11_points", "ap_all_points", "iou_xyxy", "evaluate_coco", "evaluate_ilsvrc",
           "object_thresholds", "evaluate_voc", "ResultsError", "read_coco_results", "read_ilsvrc_results",
           "read_voc_results", "write_coco_results", "write_ilsvrc_results", "write_voc_results"]
