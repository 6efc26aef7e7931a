"""Ensembles of detectors (spec §3: "an ensemble of 6 ConvNets when classifying each region").

* ``shared`` (the paper's): one set of regions per image, which every member's region head scores.
  With external proposals (``model.proposals=external``, the entry's Selective Search) the regions
  are those, the same boxes for every member. With the RPN's they are the union of the members'
  RPN proposals taken in rank order (every member's best, then every member's second best, ...),
  de-duplicated by the RPN's own per-level NMS and cut to its ``post_nms_top_n``. Rank order,
  because members' objectness scores are not on one scale: ranked by them, one member's proposals
  crowd out the others' (measured: docs/scoring.md, the ensemble methods). With ``both``, the external boxes plus
  that union. Class probabilities (and box deltas, from members that regress) are averaged,
  then the usual per-class NMS; with ``model.box_refine_iters`` the averaged boxes are scored
  again by every member (:mod:`detector.refine`). Each image is read, resized, normalised and
  batched once for all members; each member runs its trunk and RPN once, and its head once per
  refinement pass (no region is scored twice: the union is cut to one member's number of regions).
* ``nms`` and ``wbf`` (weighted boxes fusion, Solovyev et al. 2019, through the ``ensemble-boxes``
  package) combine the members' final detections
  (:func:`detector.inference.predict.fuse_detections`), so they need only the members' cached results.

``detect_shared`` can also return each member's own detections from the same pass (its own
proposals through its own head), so scoring the members and the ensemble costs one trunk pass per
member and image.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops

from .model import GoogLeNetFasterRCNN
from .refine import detect_regions, head_outputs


def check_compatible(models: list[GoogLeNetFasterRCNN]) -> None:
    """Members share classes, input normalisation, where their regions come from and how often
    their boxes are refined (their proposals, scores and boxes are pooled)."""
    ref = models[0]
    for k, m in enumerate(models[1:], 1):
        if m.proposal_source != ref.proposal_source:
            raise ValueError(f"ensemble member {k} takes model.proposals={m.proposal_source}, member 0 "
                             f"{ref.proposal_source}: members of one ensemble share their region source")
        if m.roi_heads.box_predictor.cls_score.out_features != ref.roi_heads.box_predictor.cls_score.out_features:
            raise ValueError(f"ensemble member {k} predicts another number of classes than member 0")
        if m.transform.image_mean != ref.transform.image_mean or m.transform.image_std != ref.transform.image_std:
            raise ValueError(f"ensemble member {k} normalises its input differently from member 0")
        if m.box_refine_iters != ref.box_refine_iters:
            raise ValueError(f"ensemble member {k} refines its boxes {m.box_refine_iters} times, member 0 "
                             f"{ref.box_refine_iters}: members of one ensemble share model.box_refine_iters")
        if m.box_vote_iou != ref.box_vote_iou:
            raise ValueError(f"ensemble member {k} votes boxes at IoU {m.box_vote_iou}, member 0 at "
                             f"{ref.box_vote_iou}: members of one ensemble share model.box_vote_iou")


def rpn_proposals(model: GoogLeNetFasterRCNN, images, features: dict) -> list[tuple[Tensor, Tensor, Tensor]]:
    """The RPN's proposals as torchvision computes them in eval mode, with their objectness and
    feature level kept: per image ``(boxes [P, 4], scores [P], levels [P])``."""
    rpn = model.rpn
    feats = list(features.values())
    objectness, deltas = rpn.head(feats)
    anchors = rpn.anchor_generator(images, feats)
    n = len(anchors)
    per_level = [o[0].numel() for o in objectness]  # anchors per level (A x H x W)
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(n, -1, 4)
    objectness = objectness.detach().reshape(n, -1)
    levels = torch.cat([torch.full((c,), i, dtype=torch.int64, device=objectness.device)
                        for i, c in enumerate(per_level)]).expand_as(objectness)
    top = rpn._get_top_n_idx(objectness, per_level)
    rows = torch.arange(n, device=objectness.device)[:, None]
    out = []
    for boxes, scores, lvl, shape in zip(proposals[rows, top], torch.sigmoid(objectness[rows, top]), levels[rows, top],
                                         images.image_sizes):
        out.append(_filter(rpn, box_ops.clip_boxes_to_image(boxes, shape), scores, lvl))
    return out


def _filter(rpn, boxes: Tensor, scores: Tensor, lvl: Tensor,
            score_thresh: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's ``filter_proposals`` after the clip: small and low boxes out, NMS per level,
    the best ``post_nms_top_n``. Applied again to a union it removes the members' near-duplicates
    and leaves one member's worth of regions; on one member's proposals it changes nothing."""
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
    if score_thresh:
        keep = torch.where(scores >= rpn.score_thresh)[0]
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
    keep = box_ops.batched_nms(boxes, scores, lvl, rpn.nms_thresh)[: rpn.post_nms_top_n()]
    return boxes[keep], scores[keep], lvl[keep]


def _shared_regions(ref: GoogLeNetFasterRCNN, props: list, external: list[Tensor] | None, i: int) -> Tensor:
    """Image ``i``'s one region set for every member: the external proposals, and (``rpn`` and
    ``both``) the members' RPN proposals joined in rank order (every member's best, then every
    member's second best, ...), de-duplicated and cut as one member's."""
    parts = [] if external is None else [external[i]]
    if ref.rpn is not None:
        boxes, lvl = torch.cat([p[i][0] for p in props]), torch.cat([p[i][2] for p in props])
        rank = torch.cat([-torch.arange(len(p[i][1]), dtype=torch.float32, device=boxes.device) for p in props])
        parts.append(_filter(ref.rpn, boxes, rank, lvl, score_thresh=False)[0])
    return torch.cat(parts)


@torch.inference_mode()
def detect_shared(models: list[GoogLeNetFasterRCNN], images: list[Tensor], with_members: bool = False,
                  external: list[Tensor] | None = None) -> tuple[list[dict], list[list[dict]]]:
    """The ``shared`` ensemble on a batch of images (already resized by the data pipeline):
    ``(ensemble detections per image, [each member's own detections per image] or [])``.
    ``external``: each image's precomputed proposals (``[P, 4]`` in the resized image's pixels),
    for members trained with ``model.proposals`` external or both; every member scores the same set."""
    ref = models[0]
    if ref.proposal_source != "rpn" and external is None:
        raise ValueError(f"members with model.proposals={ref.proposal_source} need the external proposals")
    batch, _ = ref.transform(images)  # normalise and pad once for every member
    sizes = batch.image_sizes
    ext = None if external is None or ref.proposal_source == "rpn" else [
        e.to(batch.tensors.device, torch.float32) for e in external]
    feats, props = [], []
    for m in models:
        f = m.backbone(batch.tensors)
        feats.append(f)
        props.append(rpn_proposals(m, batch, f) if m.rpn is not None else None)
    union = [_shared_regions(ref, props, ext, i) for i in range(len(images))]

    def averaged(regions: list[Tensor]) -> tuple[Tensor, Tensor]:
        probs, deltas, n_reg = 0, 0, 0
        for m, f in zip(models, feats):
            pr, de = head_outputs(m, f, regions, sizes)
            probs = probs + pr
            if m.bbox_reg:
                deltas, n_reg = deltas + de, n_reg + 1
        probs = probs / len(models)
        return probs, (deltas / n_reg if n_reg else probs.new_zeros(probs.shape[0], probs.shape[1] * 4))

    ensemble = detect_regions(ref, averaged, union, sizes)
    members = []
    for m, f, p in zip(models, feats, props) if with_members else ():
        own = [torch.cat(([] if ext is None else [ext[i]]) + ([] if p is None else [p[i][0]]))
               for i in range(len(images))]
        members.append(detect_regions(m, lambda r, m=m, f=f: head_outputs(m, f, r, sizes), own, sizes))
    return ensemble, members


@torch.inference_mode()
def region_probabilities(models: list[GoogLeNetFasterRCNN], images: list[Tensor],
                         regions: list[Tensor]) -> list[Tensor]:
    """Class probabilities of given regions, averaged over the members: per image ``[R, C+1]``
    (background first) for ``regions[i]`` (``[R, 4]`` xyxy in the resized image's pixels). The
    shared ensemble's scoring without its proposals: R-CNN with external proposals, and the
    self-check's comparison of devices and dtypes on the same regions."""
    batch, _ = models[0].transform(images)
    boxes = [r.to(batch.tensors.device, torch.float32) for r in regions]
    probs = sum(head_outputs(m, m.backbone(batch.tensors), boxes, batch.image_sizes)[0] for m in models) / len(models)
    return list(probs.split([len(b) for b in boxes]))
