"""Region scoring at test time, and iterative box refinement.

Box refinement (``model.box_refine_iters``): the region head's regressed box of each region, at the
region's most likely object class, is pooled and scored again, and so on ``iters`` times; every
pass's predictions join the first's before the per-class NMS. This is the "box refinement" of the
ResNet ILSVRC/COCO 2015 detection entries (He et al. 2016, appendix B: a new feature pooled from
each regressed box gives a new score and box, and the new predictions join the original ones) and Gidaris &
Komodakis's iterative localization (ICCV 2015). A region head trained on regions around objects
places a box better from a start close to the object than from a loose proposal (measured:
docs/learning.md, third round).

One function serves a single detector (:class:`~detector.model.GoogLeNetFasterRCNN` in eval mode)
and the ``shared`` ensemble (:mod:`detector.ensemble`), so an ensemble of one detects as its
member does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchvision.ops import boxes as box_ops

if TYPE_CHECKING:
    from .model import GoogLeNetFasterRCNN

# regions per image ([R_i, 4] xyxy in the resized image's pixels) -> (class probabilities
# [sum R_i, C+1], box deltas [sum R_i, 4(C+1)]), the images' regions in order
ScoreFn = Callable[[list[Tensor]], tuple[Tensor, Tensor]]


def head_outputs(model: GoogLeNetFasterRCNN, features: dict, boxes: list[Tensor],
                 image_sizes) -> tuple[Tensor, Tensor]:
    """A detector's region head on given regions: (class probabilities [R, C+1], box deltas [R, 4(C+1)])."""
    heads = model.roi_heads
    x = heads.box_head(heads.box_roi_pool(features, boxes, image_sizes))
    logits, deltas = heads.box_predictor(x)
    return torch.softmax(logits.float(), -1), deltas.float()


def detections(model: GoogLeNetFasterRCNN, probs: Tensor, deltas: Tensor, boxes: list[Tensor],
               image_sizes) -> list[dict]:
    """torchvision's decoding, score threshold and per-class NMS of scored regions, then box voting
    where ``model.box_vote_iou`` is set: per image ``{"boxes" [K, 4], "scores" [K], "labels" [K]}``."""
    heads, vote_iou = model.roi_heads, model.box_vote_iou
    if vote_iou is None:
        # torchvision's postprocess applies a softmax: log-probabilities give the probabilities back
        det_boxes, scores, labels = heads.postprocess_detections(probs.clamp_min(1e-30).log(), deltas, boxes,
                                                                 image_sizes)
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(det_boxes, scores, labels)]
    out = []
    counts = [len(r) for r in boxes]
    decoded = heads.box_coder.decode(deltas, boxes)  # [R, C+1, 4]
    for b, p, size in zip(decoded.split(counts), probs.split(counts), image_sizes):
        cand_boxes, cand_scores, cand_labels = candidates_xyxy(b, p, size, heads.score_thresh)
        keep = box_ops.batched_nms(cand_boxes, cand_scores, cand_labels, heads.nms_thresh)[:heads.detections_per_img]
        voted = vote_xyxy(cand_boxes[keep], cand_labels[keep], cand_boxes, cand_scores, cand_labels, vote_iou)
        out.append({"boxes": voted, "scores": cand_scores[keep], "labels": cand_labels[keep]})
    return out


def candidates_xyxy(boxes: Tensor, probs: Tensor, image_size, score_thresh: float) -> tuple[Tensor, Tensor, Tensor]:
    """One image's decoded boxes [R, C+1, 4] and probabilities [R, C+1] -> the (box [M, 4], score
    [M], label [M]) of every region and object class above ``score_thresh``, clipped, tiny boxes
    dropped: torchvision's ``postprocess_detections`` before its NMS."""
    boxes = box_ops.clip_boxes_to_image(boxes, image_size)[:, 1:].reshape(-1, 4)  # [R*C, 4]
    labels = torch.arange(1, probs.shape[1], device=probs.device).repeat(probs.shape[0])  # [R*C]
    scores = probs[:, 1:].reshape(-1)  # [R*C]
    keep = torch.where(scores > score_thresh)[0]
    keep = keep[box_ops.remove_small_boxes(boxes[keep], 1e-2)]
    return boxes[keep], scores[keep], labels[keep]


def vote_xyxy(kept: Tensor, kept_labels: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor,
              iou: float) -> Tensor:
    """Box voting (Gidaris & Komodakis, ICCV 2015, sec. 5; Girshick's bbox voting): each box kept
    by NMS [K, 4] becomes the score-weighted mean of the candidates [M, 4] of its class that
    overlap it by at least ``iou``, itself included: [K, 4]."""
    weight = (box_ops.box_iou(kept, boxes) >= iou) & (kept_labels[:, None] == labels[None])  # [K, M]
    weight = weight * scores[None]  # [K, M]
    return (weight @ boxes) / weight.sum(1, keepdim=True).clamp_min(1e-12)


def regressed_at_best_class(probs: Tensor, deltas: Tensor, boxes: list[Tensor], box_coder,
                            image_sizes) -> list[Tensor]:
    """Each region's regressed box for its most likely object class (background aside), clipped
    to its image: per image ``[R_i, 4]``."""
    decoded = box_coder.decode(deltas, boxes)  # [R, C+1, 4]
    best = probs[:, 1:].argmax(1) + 1  # [R]
    picked = decoded.gather(1, best[:, None, None].expand(-1, 1, 4)).squeeze(1)  # [R, 4]
    return [box_ops.clip_boxes_to_image(b, size)
            for b, size in zip(picked.split([len(b) for b in boxes]), image_sizes)]


def refine_regions(score: ScoreFn, regions: list[Tensor], box_coder, image_sizes,
                   iters: int) -> tuple[list[Tensor], Tensor, Tensor]:
    """The regions scored, then ``iters`` passes over their regressed boxes, the passes joined per
    image: ``(regions per image, probabilities [R, C+1], deltas [R, 4(C+1)])`` for
    :func:`detections`. With ``iters=0``, the regions and their scores as they are."""
    probs, deltas = score(regions)
    passes = [(regions, probs, deltas)]
    for _ in range(iters):
        regions = regressed_at_best_class(probs, deltas, regions, box_coder, image_sizes)
        probs, deltas = score(regions)
        passes.append((regions, probs, deltas))
    if iters == 0:
        return passes[0]
    counts = [[len(b) for b in regs] for regs, _, _ in passes]
    split = [(p.split(n), d.split(n)) for (_, p, d), n in zip(passes, counts)]
    joined = [torch.cat([regs[i] for regs, _, _ in passes]) for i in range(len(regions))]
    probs = torch.cat([ps[i] for i in range(len(regions)) for ps, _ in split])
    deltas = torch.cat([ds[i] for i in range(len(regions)) for _, ds in split])
    return joined, probs, deltas


def detect_regions(model: GoogLeNetFasterRCNN, score: ScoreFn, regions: list[Tensor], image_sizes) -> list[dict]:
    """``model``'s detections (:func:`detections`) from ``regions`` scored by ``score``, after the
    model's ``box_refine_iters`` refinement passes."""
    regions, probs, deltas = refine_regions(score, regions, model.roi_heads.box_coder, image_sizes,
                                            model.box_refine_iters)
    return detections(model, probs, deltas, regions, image_sizes)
