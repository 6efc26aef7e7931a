"""The two ways to make proposals, as functions of one image record: ``(boxes [P, 4] float32 xyxy
in the original image's pixels, best first; scores [P] or None)``. Both decode the image as
training does (``load_sample``: the annotation's size, EXIF as annotated) and raise
``BadImageError`` for one that cannot be read.

Each comes as a recipe (a small frozen, picklable value) that builds the function in the worker
process that runs it (:mod:`core.engines`): a model is loaded where it runs, never shipped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.dataset import images_to, load_sample, to_uint8_tensor
from ..data.transforms import resize_image
from ..ensemble import rpn_proposals
from ..model import GoogLeNetFasterRCNN
from .selective_search import SelectiveSearch


@dataclass(frozen=True)
class SelectiveSearchRecipe:
    ss: SelectiveSearch

    def __call__(self) -> SelectiveSearchBoxes:
        import cv2

        cv2.setNumThreads(1)  # parallel over workers, not threads inside one
        return SelectiveSearchBoxes(self.ss)


@dataclass(frozen=True)
class RPNRecipe:
    """A member's RPN (see :class:`RPNBoxes`), loaded from ``checkpoint`` in the worker."""

    checkpoint: str
    device: str
    test_scale: int
    max_size: int
    top_n: int

    def __call__(self) -> RPNBoxes:
        from core.runtime import select_device

        from ..final import load_final

        model, _ = load_final(self.checkpoint)
        return RPNBoxes(model, select_device(self.device), self.test_scale, self.max_size, self.top_n)


class SelectiveSearchBoxes:
    """Selective Search on the original image (or a copy at ``max_side``); no scores."""

    def __init__(self, ss: SelectiveSearch) -> None:
        self.ss = ss

    def __call__(self, rec) -> tuple[np.ndarray, None]:
        return self.ss(load_sample(rec).image), None


class RPNBoxes:
    """A trained member's RPN at the test scale, its best ``top_n`` after its NMS, with objectness:
    the modern stand-in for the entry's 200 MultiBox boxes."""

    def __init__(self, model: GoogLeNetFasterRCNN, device: torch.device, test_scale: int, max_size: int,
                 top_n: int) -> None:
        self.model, self.device, self.test_scale, self.max_size = model.eval().to(device), device, test_scale, max_size
        rpn = model.rpn
        rpn._post_nms_top_n["testing"] = top_n  # torchvision keeps them per mode in these dicts
        rpn._pre_nms_top_n["testing"] = max(rpn._pre_nms_top_n["testing"], top_n)

    @torch.inference_mode()
    def __call__(self, rec) -> tuple[np.ndarray, np.ndarray]:
        image = load_sample(rec).image
        h, w = image.shape[:2]
        small = resize_image(image, self.test_scale, self.max_size)
        batch, _ = self.model.transform(images_to([to_uint8_tensor(small)], self.device))
        boxes, scores, _ = rpn_proposals(self.model, batch, self.model.backbone(batch.tensors))[0]
        sh, sw = small.shape[:2]
        scale = np.array([w / sw, h / sh, w / sw, h / sh], np.float32)
        return boxes.float().cpu().numpy() * scale, scores.float().cpu().numpy()
