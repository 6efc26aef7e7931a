"""The region head's training: torchvision's ``RoIHeads`` with two options that place boxes more
tightly, and nothing else changed (the same parameters and state-dict keys, the same inference).

* ``box_loss="giou"``: the regression loss is 1 - GIoU of the regressed box against its object
  (Rezatofighi et al., CVPR 2019) instead of smooth L1 on the encoded deltas, weighted 10 as in
  mmdetection's ``faster_rcnn_r50_fpn_giou_1x``. An IoU-based loss weighs a box's sides by how much
  of the overlap they cost, where smooth L1 weighs each delta alike.
* ``gt_jitter=n``: each object's box joins the regions ``n`` more times, each side moved by a
  random share of the box's size (normal, ``JITTER_STD``). Regions close to their objects are
  what test-time refinement (:mod:`detector.refine`) feeds the head; the RPN gives few of them
  early in training, and Cascade R-CNN (Cai & Vasconcelos, CVPR 2018) shows that a head
  regresses best from the IoU range it was trained on.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import generalized_box_iou_loss

BoxLoss = Literal["smooth_l1", "giou"]
GIOU_WEIGHT = 10.0
JITTER_STD = 0.1  # of the box's width (x sides) and height (y sides): IoU 0.6-0.85 for the middle 80%


class RegionHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (box branch only) with ``box_loss`` and ``gt_jitter``."""

    def __init__(self, *args, box_loss: BoxLoss = "smooth_l1", gt_jitter: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if box_loss not in ("smooth_l1", "giou"):
            raise ValueError(f"box_loss={box_loss!r}: smooth_l1 or giou")
        if gt_jitter < 0:
            raise ValueError(f"gt_jitter={gt_jitter}: a count >= 0")
        self.box_loss, self.gt_jitter = box_loss, gt_jitter

    @classmethod
    def like(cls, heads: RoIHeads, box_loss: BoxLoss = "smooth_l1", gt_jitter: int = 0) -> RegionHeads:
        """``heads`` (torchvision's box branch: the same modules and settings) with the two options."""
        matcher, sampler = heads.proposal_matcher, heads.fg_bg_sampler
        return cls(heads.box_roi_pool, heads.box_head, heads.box_predictor, matcher.high_threshold,
                   matcher.low_threshold, sampler.batch_size_per_image, sampler.positive_fraction,
                   heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
                   box_loss=box_loss, gt_jitter=gt_jitter)

    def add_gt_proposals(self, proposals: list[Tensor], gt_boxes: list[Tensor]) -> list[Tensor]:
        """The regions, each image's objects, and ``gt_jitter`` moved copies of them."""
        return [torch.cat([p, gt, *jittered_xyxy(gt, self.gt_jitter)]) for p, gt in zip(proposals, gt_boxes)]

    def forward(self, features, proposals, image_shapes, targets=None):  # type: ignore[override]
        if not self.training or self.box_loss == "smooth_l1":
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        labels, targets_ = torch.cat(labels), torch.cat(regression_targets)  # [N], [N, 4]
        pos = torch.where(labels > 0)[0]
        deltas = box_regression.reshape(len(labels), -1, 4)[pos, labels[pos]]  # [P, 4]
        loss = giou_loss_deltas(deltas, targets_[pos], self.box_coder.weights) * GIOU_WEIGHT / labels.numel()
        return [], {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": loss}


def jittered_xyxy(boxes: Tensor, n: int) -> list[Tensor]:
    """``n`` copies of ``boxes`` [G, 4] xyxy, each side moved by N(0, JITTER_STD) of the box's
    width or height, kept at least one pixel wide: ``n`` tensors [G, 4]."""
    if n == 0 or len(boxes) == 0:
        return []
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # [G, 4]: w, h, w, h
    out = []
    for _ in range(n):
        moved = boxes + torch.randn_like(boxes) * JITTER_STD * size  # [G, 4]
        x1y1 = torch.minimum(moved[:, :2], moved[:, 2:] - 1)
        out.append(torch.cat([x1y1, torch.maximum(moved[:, 2:], x1y1 + 1)], 1))
    return out


def giou_loss_deltas(deltas: Tensor, target_deltas: Tensor, weights: tuple[float, ...]) -> Tensor:
    """Summed 1 - GIoU between the boxes that ``deltas`` [P, 4] and ``target_deltas`` [P, 4] (the
    box coder's encoding) make of the same region. GIoU is unchanged by scaling x and y and by
    shifting, so both are decoded on the unit box: the regions themselves are not needed."""
    return generalized_box_iou_loss(unit_decoded_xyxy(deltas, weights), unit_decoded_xyxy(target_deltas, weights),
                                    reduction="sum")


def unit_decoded_xyxy(deltas: Tensor, weights: tuple[float, ...]) -> Tensor:
    """[P, 4] box-coder deltas (dx, dy, dw, dh, scaled by ``weights``) applied to the box (0, 0, 1, 1):
    [P, 4] xyxy. The size deltas are clamped as torchvision's decoder clamps them (log(1000/16))."""
    wx, wy, ww, wh = weights
    cx, cy = deltas[:, 0] / wx + 0.5, deltas[:, 1] / wy + 0.5  # [P]
    clamp = torch.log(torch.tensor(1000.0 / 16))
    w, h = torch.exp((deltas[:, 2] / ww).clamp(max=clamp)), torch.exp((deltas[:, 3] / wh).clamp(max=clamp))  # [P]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
