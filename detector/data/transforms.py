"""Detection transforms. The image is resized once, here (the detector's own transform must not
resize again): the shorter side to one of ``scales`` (chosen per image in training), capped so
that the longer side stays within ``max_size``. Flips and photometric distortion go through
albumentations with ``BboxParams``, which keeps boxes, labels and ignore flags in step and drops
boxes that a transform made degenerate."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from .device import Encoded
from .sample import DetSample


def resize_scale(height: int, width: int, short: int, max_size: int) -> float:
    """The factor that takes the shorter side to ``short``, unless the longer would exceed ``max_size``."""
    return min(short / min(height, width), max_size / max(height, width))


def resized_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """``(height, width)`` after :func:`resize_image` (known from the annotation, without decoding)."""
    f = resize_scale(height, width, short, max_size)
    return max(1, round(height * f)), max(1, round(width * f))


def resize_image(image: np.ndarray, short: int, max_size: int) -> np.ndarray:
    """``[H, W, 3]`` -> the image with its shorter side ``short``, its longer at most ``max_size``."""
    h, w = image.shape[:2]
    f = resize_scale(h, w, short, max_size)
    nh, nw = resized_size(h, w, short, max_size)
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA)


def resize_sample(s: DetSample, short: int, max_size: int) -> DetSample:
    """The sample resized (:func:`resize_image`), its boxes with it."""
    return with_image(s, resize_image(s.image, short, max_size))


def with_image(s: DetSample, image: np.ndarray) -> DetSample:
    """``s`` with ``image``, its own image at another size: boxes and proposals scaled to it."""
    (h, w), (nh, nw) = s.image.shape[:2], image.shape[:2]
    scale = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
    proposals = None if s.proposals is None else s.proposals * scale
    return DetSample(image, s.boxes * scale, s.labels, s.ignore, s.image_id, s.orig_size, proposals=proposals)


MEAN_FILL = (124, 116, 104)  # ImageNet's mean colour, 0..255: a zoomed-out image's border


class DetTransform:
    """``train=True``: random scale from ``scales``, zoom (``zoom`` > 0), horizontal flip, photometric distortion.
    ``train=False``: the first of ``scales``, nothing random."""

    def __init__(self, scales: tuple[int, ...], max_size: int, train: bool, flip: float = 0.5,
                 photometric: float = 0.2, min_box_size: float = 1.0, zoom: float = 0.0) -> None:
        if not scales or min(scales) < 1 or max_size < max(scales):
            raise ValueError(f"need scales >= 1 and max_size >= every scale, got scales={scales} max_size={max_size}")
        if not 0.0 <= zoom < 1.0:
            raise ValueError(f"zoom={zoom}: a share in [0, 1)")
        self.scales, self.max_size, self.train = tuple(scales), max_size, train
        ops = []
        if train and zoom > 0:
            ops.append(A.Affine(scale=(1 - zoom, 1 + zoom), keep_ratio=True, translate_percent=(-zoom / 2, zoom / 2),
                                fill=MEAN_FILL, p=0.5))
        if train and flip > 0:
            ops.append(A.HorizontalFlip(p=flip))
        if train and photometric > 0:
            ops.append(A.ColorJitter(brightness=photometric, contrast=photometric, saturation=photometric, hue=0.0,
                                     p=0.8))
        # applied params kept: plan() hands the device what was done to the pixels
        self.aug = A.Compose(ops, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "ignore"],
                                                           min_width=min_box_size, min_height=min_box_size,
                                                           clip=True), save_applied_params=True) if ops else None
        self.rng = np.random.default_rng(0)

    def set_seed(self, seed: int) -> None:
        """Seed the next call (per sample, so workers and resumes draw the same)."""
        self.rng = np.random.default_rng(seed)
        if self.aug is not None:
            self.aug.set_random_seed(int(self.rng.integers(2**31)))

    def _short(self) -> int:
        return int(self.rng.choice(self.scales)) if self.train else self.scales[0]

    def __call__(self, s: DetSample) -> DetSample:
        return self._augment(resize_sample(s, self._short(), self.max_size))[0]

    def plan(self, s: DetSample) -> tuple[DetSample, Encoded]:
        """What ``__call__`` does to ``s``, drawn from the same seed, without its pixels (``s.image``
        may be any array of the stored image's shape; ``data.decode: device``): the sample with
        its boxes (and proposals) moved exactly as there, and ``(size, flip, jitter)`` for the
        device, as an :class:`Encoded` without bytes. The image albumentations sees is blank."""
        h, w = resized_size(*s.image.shape[:2], self._short(), self.max_size)
        s, applied = self._augment(with_image(s, np.zeros((h, w, 3), np.uint8)))
        done = dict(applied)
        if "Affine" in done:
            raise ValueError("zoom works with data.decode=cpu only: the device path has no zoom")
        p = done.get("ColorJitter")
        jitter = None if p is None else ((p["brightness"], p["contrast"], p["saturation"]), tuple(p["order"]))
        return s, Encoded("", torch.empty(0, dtype=torch.uint8), (h, w), False, "HorizontalFlip" in done, jitter)

    def _augment(self, s: DetSample) -> tuple[DetSample, list[tuple[str, dict]]]:
        """Flips and photometric distortion; with the transforms albumentations applied, by name."""
        if self.aug is None:
            return s, []
        if s.proposals is None:
            boxes, labels, ignore = s.boxes, s.labels, s.ignore
        else:  # the proposals ride along as boxes of label -1, so every geometric op moves them too
            n = len(s.proposals)
            boxes = np.concatenate([s.boxes, s.proposals]).astype(np.float32)
            labels = np.concatenate([s.labels, np.full(n, -1, np.int64)])
            ignore = np.concatenate([s.ignore, np.zeros(n, bool)])
        out = self.aug(image=s.image, bboxes=boxes, labels=labels, ignore=ignore)
        boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(out["labels"], np.int64).reshape(-1)
        ignore = np.asarray(out["ignore"], bool).reshape(-1)
        own = labels >= 0
        proposals = None if s.proposals is None else boxes[~own]
        return DetSample(out["image"], boxes[own], labels[own], ignore[own], s.image_id, s.orig_size,
                         proposals=proposals), list(out.get("applied_transforms", []))
