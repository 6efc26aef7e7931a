"""The one sample type every detection reader yields, and the record of what was skipped or fixed.

Box convention, everywhere in ``detector``: ``boxes [N, 4]`` float32 ``(x1, y1, x2, y2)`` in
continuous pixel coordinates, the box covering ``[x1, x2) x [y1, y2)``. Annotation formats that
count inclusive pixel indices (ILSVRC 0-based, Pascal VOC 1-based) are converted on reading and
back on writing, in one place each (``box_ops``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


# Ground truth is kept as annotated, as the devkits score it; only what training sees is clipped.
CROSSING = "boxes crossing the image border (scored as annotated, clipped for training)"


@dataclass
class DetSample:
    image: np.ndarray  # [H, W, 3] uint8 RGB
    boxes: np.ndarray  # [N, 4] float32 xyxy, pixels
    labels: np.ndarray  # [N] int64, 1..C (0 is background)
    ignore: np.ndarray  # [N] bool: VOC difficult, COCO crowd, ILSVRC blacklisted
    image_id: str | int
    orig_size: tuple[int, int]  # (height, width) before any transform
    position: int = -1  # index of the image in its data set (set by DetectionDataset)


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


@dataclass
class DataReport:
    """Counts of what reading skipped or fixed, with the first few messages naming the files."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 5

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(message)

    def merge(self, other: "DataReport") -> None:
        self.counts.update(other.counts)
        for m in other.examples:
            if len(self.examples) < self.max_examples:
                self.examples.append(m)

    def summary(self, what: str = "data") -> str | None:
        """One line (plus examples) or None when nothing happened."""
        if not self.counts:
            return None
        parts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.counts.items()))
        lines = [f"{what}: {parts}"] + [f"  e.g. {m}" for m in self.examples]
        return "\n".join(lines)

    def __bool__(self) -> bool:
        return bool(self.counts)


def empty_boxes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), np.zeros((0,), bool)
