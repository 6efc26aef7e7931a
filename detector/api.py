"""Trained detectors from Python: ``Detector``, one member or an ensemble behind one call.

    from detector import Detector
    det = Detector.from_checkpoint("work_dirs/NAME/model_0/model_final.pth", device="auto")
    results = det("photo.jpg")              # or an RGB array, or a list of either
    results[0].boxes, results[0].scores, results[0].names
    picture = det.draw("photo.jpg", results[0])
    ens = Detector.ensemble([f"work_dirs/NAME/model_{k}/model_final.pth" for k in range(6)])

A call returns a list of :class:`Detections`, one per image, always (a single image gives a list
of one): boxes are xyxy in the original image's pixels. Images are resized to the config's test
scale as ``eval_map.py`` resizes them, and batched only with images of the same resized size, so
a batch gives each image what it alone would get. The models run through
:mod:`detector.inference`, as everywhere else: this module reads inputs and shapes outputs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.data import image_paths, read_image
from core.errors import DataError
from core.runtime import select_device

from .data.dataset import to_tensor
from .data.transforms import resize_image
from .ensemble import check_compatible
from .evaluation import ImageDetections
from .final import load_final
from .inference.predict import Predictor, merge_views, views
from .visualize import draw_boxes

Image = str | np.ndarray  # a path, or an RGB uint8 array [H, W, 3]


@dataclass
class Detections:
    """One image's detections."""

    boxes: np.ndarray  # [K, 4] float32 xyxy, the original image's pixels
    scores: np.ndarray  # [K] float32, descending
    labels: np.ndarray  # [K] int64, 1..C
    names: list[str]  # [K] the labels' class names
    size: tuple[int, int]  # the image's (height, width)
    source: str = ""  # its path ("" for an array)

    def __len__(self) -> int:
        return len(self.scores)

    def to_coco(self, image_id: int) -> list[dict]:
        """COCO results entries (``bbox`` xywh; ``category_id`` the label, ``category_name`` its name)."""
        return [{"image_id": image_id, "category_id": int(lab), "category_name": name,
                 "bbox": [round(float(v), 2) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])], "score": float(s)}
                for b, s, lab, name in zip(self.boxes, self.scores, self.labels, self.names)]


def expand_inputs(inputs: Image | Sequence[Image]) -> list[Image]:
    """Paths (files; folders searched for images; globs expanded, sorted) and arrays, in order."""
    items = [inputs] if isinstance(inputs, (str, np.ndarray)) else list(inputs)
    out: list[Image] = []
    for x in items:
        if isinstance(x, np.ndarray):
            if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.uint8:
                raise DataError(f"an image array must be RGB uint8 [H, W, 3], got {x.dtype} {list(x.shape)}")
            out.append(x)
        elif glob.has_magic(str(x)):
            found = image_paths(sorted(glob.glob(str(x), recursive=True)))
            if not found:
                raise DataError(f"{x}: no images match")
            out += found
        else:
            out += image_paths([os.fspath(x)])
    return out


class Detector:
    """Trained members (one, or an ensemble combined by ``method``) on one device. Every image is
    run through :class:`~detector.inference.predict.Predictor`, the path ``eval_map.py`` takes:
    resized to the test scale (and, with ``tta``, to each of ``tta_scales``, each view also mirrored,
    the views merged), batched only with images of the same resized size."""

    def __init__(self, models: list[torch.nn.Module], class_names: list[str], test_scale: int, max_size: int,
                 device: torch.device, method: str = "shared", min_score: float = 0.0, fuse_iou: float = 0.55,
                 batch_size: int = 4, max_proposals: int = 2000, tta: bool = False,
                 tta_scales: Sequence[int] = ()) -> None:
        self.predictor = Predictor([m.to(device) for m in models], method, fuse_iou)
        self.class_names = list(class_names)
        self.max_size = max_size
        self.device = device
        self.min_score = min_score
        self.fuse_iou = fuse_iou
        self.batch_size = batch_size
        self.max_proposals = max_proposals
        self.views = views(test_scale, list(tta_scales) if tta else None)

    @classmethod
    def from_checkpoint(cls, path: str, device: str = "auto", **kwargs) -> Detector:
        """One trained member from its ``model_final.pth`` (``kwargs``: ``min_score``, ``batch_size``,
        ``tta``)."""
        return cls.ensemble([path], device=device, **kwargs)

    @classmethod
    def ensemble(cls, paths: Sequence[str], device: str = "auto", method: str = "shared", **kwargs) -> Detector:
        """Members trained on the same classes (``model_final.pth`` each), combined as ``eval_map.py
        --method`` combines them; the first member's config gives the test scale."""
        if not paths:
            raise ValueError("Detector.ensemble needs at least one checkpoint")
        loaded = [load_final(p) for p in paths]
        names = loaded[0][1]["class_names"]
        for p, (_, state) in zip(paths, loaded):
            if state["class_names"] != names:
                raise DataError(f"{p}: trained on other classes than {paths[0]}; an ensemble needs the same classes")
        try:
            check_compatible([m for m, _ in loaded])
        except ValueError as e:
            raise DataError(f"{', '.join(paths)}: {e}") from None
        cfg = loaded[0][1]["cfg"]
        kwargs.setdefault("tta_scales", cfg.data.tta_scales)
        return cls([m for m, _ in loaded], names, cfg.data.test_scale, cfg.data.max_size, select_device(device),
                   method=method, max_proposals=cfg.data.max_proposals, **kwargs)

    @torch.inference_mode()
    def __call__(self, inputs: Image | Sequence[Image]) -> list[Detections]:
        """Detections for each image of ``inputs`` (see :func:`expand_inputs`), in order."""
        items = expand_inputs(inputs)
        out: list[Detections] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start:start + self.batch_size]
            images = [read_image(x) if isinstance(x, str) else x for x in chunk]
            dets = self._detect(images)
            out += [self._result(d, im.shape[:2], x if isinstance(x, str) else "")
                    for d, im, x in zip(dets, images, chunk)]
        return out

    def _detect(self, images: list[np.ndarray]) -> list[ImageDetections]:
        """Each image's detections in its own pixels, merged over the views."""
        regions = [self._regions(im) for im in images] if self.predictor.external else None
        per_view: list[list[ImageDetections]] = [[] for _ in images]
        for scale, mirrored in self.views:
            resized = [resize_image(im, scale, self.max_size) for im in images]
            by_shape: dict[tuple, list[int]] = {}
            for i, r in enumerate(resized):
                by_shape.setdefault(r.shape, []).append(i)
            for group in by_shape.values():
                props = None if regions is None else [
                    torch.from_numpy(regions[i] / _scale_xyxy(images[i], resized[i])).to(self.device) for i in group]
                dets, _ = self.predictor.detect([to_tensor(resized[i]).to(self.device) for i in group], props,
                                                [images[i].shape[:2] for i in group], mirrored)
                for i, d in zip(group, dets):
                    per_view[i].append(d)
        return [merge_views(v, im.shape[:2], self.fuse_iou) for v, im in zip(per_view, images)]

    def _regions(self, image: np.ndarray) -> np.ndarray:
        """Selective Search's boxes (the entry's fast setting) in the image's pixels, for members
        trained on external proposals."""
        from .proposals.selective_search import SelectiveSearch

        return SelectiveSearch("fast")(image)[: self.max_proposals]

    def _result(self, d: ImageDetections, size: tuple[int, int], source: str) -> Detections:
        keep = d.scores >= self.min_score
        order = np.argsort(-d.scores[keep], kind="stable")
        labels = d.labels[keep][order].astype(np.int64)
        return Detections(d.boxes[keep][order].astype(np.float32), d.scores[keep][order].astype(np.float32), labels,
                          [self.class_names[int(k) - 1] for k in labels], (int(size[0]), int(size[1])), source)

    def draw(self, image: Image, dets: Detections) -> np.ndarray:
        """An RGB copy of ``image`` with ``dets`` drawn (boxes, class names, scores)."""
        rgb = read_image(image) if isinstance(image, str) else image
        return draw_boxes(rgb, dets.boxes, dets.labels, self.class_names, scores=dets.scores)[:, :, ::-1].copy()


def _scale_xyxy(original: np.ndarray, resized: np.ndarray) -> np.ndarray:
    """[4] how many of ``original``'s pixels make one of ``resized``'s, for xyxy boxes."""
    return np.array([original.shape[1] / resized.shape[1], original.shape[0] / resized.shape[0]] * 2, np.float32)
