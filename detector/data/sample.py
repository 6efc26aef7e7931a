"""The one sample type every detection reader yields, and the record of what was skipped or fixed.

Box convention, everywhere in ``detector``: ``boxes [N, 4]`` float32 ``(x1, y1, x2, y2)`` in
continuous pixel coordinates, the box covering ``[x1, x2) x [y1, y2)``. Annotation formats that
count inclusive pixel indices (ILSVRC 0-based, Pascal VOC 1-based) are converted on reading and
back on writing, in one place each (``box_ops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data_report import DataReport

__all__ = ["CROSSING", "CROSSING_ACTION", "CROSSING_KIND", "DataReport", "DetSample", "ImageRecord", "empty_boxes"]


# Ground truth is kept as annotated, as the devkits score it; only what training sees is clipped.
CROSSING_KIND, CROSSING_ACTION = "boxes crossing the image border", "scored as annotated, clipped for training"
CROSSING = f"{CROSSING_KIND} ({CROSSING_ACTION})"  # its label in ``DataReport.counts``


@dataclass
class DetSample:
    image: np.ndarray  # [H, W, 3] uint8 RGB (data.decode: device, after the transform: a device.Encoded)
    boxes: np.ndarray  # [N, 4] float32 xyxy, pixels
    labels: np.ndarray  # [N] int64, 1..C (0 is background)
    ignore: np.ndarray  # [N] bool: VOC difficult, COCO crowd, ILSVRC blacklisted
    image_id: str | int
    orig_size: tuple[int, int]  # (height, width) before any transform
    position: int = -1  # index of the image in its data set (set by DetectionDataset)
    proposals: np.ndarray | None = None  # [P, 4] float32 xyxy: external region proposals, if the model takes them


@dataclass
class ImageRecord:
    """What the index knows about an image without decoding it."""

    path: str
    image_id: str | int
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32 xyxy
    labels: np.ndarray  # [N] int64
    ignore: np.ndarray  # [N] bool
    source: str = ""  # the annotation file, for messages
    index: int = -1  # ILSVRC image index (val/test lists), used by the submission format
    ignore_classes: tuple[int, ...] = ()  # ILSVRC blacklist: classes not scored in this image

    @property
    def aspect(self) -> float:
        return self.width / self.height


def empty_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), bool)
