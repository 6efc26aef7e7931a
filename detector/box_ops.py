"""Box operations as small pure functions; the format is in the name, shapes in the comments.

``xyxy``: continuous pixel coordinates, the box covering [x1, x2) x [y1, y2).
``inclusive``: integer pixel indices of the first and last covered pixel (ILSVRC, 0-based).
``xywh``: COCO's (x, y, width, height).
"""

from __future__ import annotations

import numpy as np

# float32 by default (annotations are whole pixels; what training feeds the model); results files
# are read as float64, keeping the file's precision to the AP.


def inclusive_to_xyxy(boxes: np.ndarray, origin: int = 0, dtype=np.float32) -> np.ndarray:
    """[N, 4] inclusive pixel indices counted from ``origin`` (ILSVRC 0, VOC 1) -> [N, 4] xyxy."""
    b = np.asarray(boxes, dtype).reshape(-1, 4) - origin
    return np.concatenate([b[:, :2], b[:, 2:] + 1], axis=1)


def xyxy_to_inclusive(boxes: np.ndarray, origin: int = 0, dtype=np.float32) -> np.ndarray:
    """[N, 4] xyxy -> [N, 4] inclusive pixel indices counted from ``origin`` (inverse of the above)."""
    b = np.asarray(boxes, dtype).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - 1], axis=1) + origin


def xywh_to_xyxy(boxes: np.ndarray, dtype=np.float32) -> np.ndarray:
    """[N, 4] COCO xywh -> [N, 4] xyxy."""
    b = np.asarray(boxes, dtype).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: np.ndarray, dtype=np.float32) -> np.ndarray:
    """[N, 4] xyxy -> [N, 4] COCO xywh."""
    b = np.asarray(boxes, dtype).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def clip_xyxy(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, 4] xyxy clipped to the image [0, width] x [0, height]."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, 0::2] = b[:, 0::2].clip(0, width)
    b[:, 1::2] = b[:, 1::2].clip(0, height)
    return b


def hflip_xyxy(boxes, width: float):
    """[N, 4] xyxy (NumPy, or a torch tensor on any device) of an image ``width`` wide -> [N, 4]
    the boxes of its mirror image, of the same kind."""
    if not isinstance(boxes, np.ndarray) and hasattr(boxes, "clone"):  # a tensor: no torch import for NumPy callers
        out = boxes[:, [2, 1, 0, 3]].clone()
        out[:, [0, 2]] = width - out[:, [0, 2]]
        return out
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1)


def iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] x [M, 4] xyxy -> [N, M] IoU. With boxes from inclusive pixel indices (xyxy = indices
    + (0, 0, 1, 1)), this is exactly the devkits' "+1" inclusive-pixel IoU."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)  # [N, M]
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)  # [N, M]
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])  # [N]
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # [M]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
