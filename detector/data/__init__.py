"""Detection data: readers (ILSVRC DET, Pascal VOC, COCO) that yield one sample type, transforms,
batching grouped by aspect ratio, and the miniature ILSVRC."""

from .coco import COCODet, records_to_coco
from .dataset import DetBatch, DetectionDataset, GroupedBatchSampler, Skipped, collate, load_sample
from .ilsvrc import MAP_DET, ILSVRCDet, parse_xml
from .sample import DataReport, DetSample, ImageRecord
from .transforms import DetTransform, resize_sample, resize_scale
from .voc import VOC_CLASSES, VOCDet

__all__ = ["COCODet", "records_to_coco", "DetBatch", "DetectionDataset", "GroupedBatchSampler", "Skipped", "collate",
           "load_sample", "MAP_DET", "ILSVRCDet", "parse_xml", "DataReport", "DetSample", "ImageRecord",
           "DetTransform", "resize_sample", "resize_scale", "VOC_CLASSES", "VOCDet"]
