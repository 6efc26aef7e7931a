"""Test-time augmentation for detection: each image seen at the test scale and at ``data.tta_scales``,
plain and mirrored, and its detections merged over the views by weighted boxes fusion (as
``eval_map.py --method wbf`` merges ensemble members: a box found in fewer views scores lower).

Each view runs the model as it is; :class:`Flipped` runs it on mirrored images and mirrors its
boxes back, so every view's detections are in the same (resized image's) pixels as the plain one's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .ensemble import fuse_detections
from .evaluation import ImageDetections


def flip_xyxy(boxes: Tensor, width: int) -> Tensor:
    """[N, 4] xyxy boxes mirrored in an image ``width`` pixels wide -> [N, 4] xyxy."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


class Flipped(nn.Module):
    """``model`` on horizontally mirrored images, with its boxes (and any external proposals)
    mirrored to match: called as the model is, returning what it returns."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.proposal_source = model.proposal_source

    def forward(self, images: list[Tensor], proposals: list[Tensor] | None = None) -> list[dict]:
        widths = [im.shape[-1] for im in images]
        props = None if proposals is None else [flip_xyxy(p, w) for p, w in zip(proposals, widths)]
        out = self.model([im.flip(-1) for im in images], proposals=props)
        return [{**o, "boxes": flip_xyxy(o["boxes"], w)} for o, w in zip(out, widths)]


def views(test_scale: int, extra_scales: list[int]) -> list[tuple[int, bool]]:
    """``(shorter side, mirrored)`` of each view: the test scale first, then each extra scale, each
    plain and mirrored."""
    scales = [test_scale] + [s for s in extra_scales if s != test_scale]
    return [(s, flip) for s in scales for flip in (False, True)]


def merge_views(per_view: list[ImageDetections], size: tuple[int, int], iou: float = 0.55,
                max_dets: int = 100) -> ImageDetections:
    """One image's detections (original pixels, ``size`` = (height, width)) from each view's."""
    return fuse_detections(per_view, "wbf", iou, size, max_dets)
