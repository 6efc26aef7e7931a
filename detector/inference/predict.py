"""From resized images to detections in the original images' pixels: one detector, an ensemble
(``shared``, ``nms``, ``wbf``: :data:`detector.inference.METHODS`) and test-time views (each image
at the test scale and at ``data.tta_scales``, plain and mirrored, merged by weighted boxes fusion).

The images come resized by whoever reads them (the data pipeline for ``eval_map`` and training,
``Detector`` for arrays and files); a mirrored view is made here, on the batch, and its boxes are
mirrored back, so every view's detections are in the same pixels as the plain view's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import boxes as box_ops

from core.progress import progress_bar

from ..box_ops import hflip_xyxy
from ..data.dataset import images_to, proposals_of
from ..ensemble import check_compatible, detect_shared
from ..evaluation import ImageDetections
from . import METHODS

Autocast = Callable[[], contextlib.AbstractContextManager]


def rescaled(pred: dict, orig_size: tuple[int, int], size: tuple[int, int]) -> ImageDetections:
    """A model's output on an image resized from ``orig_size`` to ``size`` (height, width), in the
    original image's pixels."""
    (oh, ow), (h, w) = orig_size, size
    scale = np.array([ow / w, oh / h, ow / w, oh / h], np.float32)
    return ImageDetections(pred["boxes"].float().cpu().numpy() * scale, pred["scores"].float().cpu().numpy(),
                           pred["labels"].cpu().numpy().astype(np.int64))


def fuse_detections(per_member: list[ImageDetections], method: str, iou: float, size: tuple[int, int],
                    max_dets: int = 100) -> ImageDetections:
    """One image's detections from several sets of final detections (members, or views): per-class
    NMS over their union (``nms``), or weighted boxes fusion (``wbf``: boxes averaged by score within
    each cluster; a cluster found by fewer sets scores lower). ``size`` is the image's (height, width)."""
    if method == "nms":
        boxes = torch.from_numpy(np.concatenate([d.boxes for d in per_member]).astype(np.float32))
        scores = torch.from_numpy(np.concatenate([d.scores for d in per_member]).astype(np.float32))
        labels = torch.from_numpy(np.concatenate([d.labels for d in per_member]).astype(np.int64))
        keep = box_ops.batched_nms(boxes, scores, labels, iou)[:max_dets]
        return ImageDetections(boxes[keep].numpy(), scores[keep].numpy(), labels[keep].numpy())
    if method != "wbf":
        raise ValueError(f"fusing detections takes nms or wbf, got {method!r}")
    from ensemble_boxes import weighted_boxes_fusion  # optional: only this method needs it

    h, w = size
    scale = np.array([w, h, w, h], np.float64)
    boxes = [(d.boxes / scale).clip(0, 1) for d in per_member]
    if not any(len(b) for b in boxes):
        return ImageDetections.empty()
    b, s, lab = weighted_boxes_fusion(boxes, [d.scores for d in per_member], [d.labels for d in per_member],
                                      iou_thr=iou, skip_box_thr=0.0)
    order = np.argsort(-s, kind="stable")[:max_dets]
    return ImageDetections((b[order] * scale).astype(np.float32), s[order].astype(np.float32),
                           lab[order].astype(np.int64))


def views(test_scale: int, tta_scales: Sequence[int] | None) -> list[tuple[int, bool]]:
    """``(shorter side, mirrored)`` of each view of an image: without test-time augmentation
    (``tta_scales`` None) the test scale alone; with it the test scale and each of ``tta_scales``,
    each plain and mirrored."""
    if tta_scales is None:
        return [(test_scale, False)]
    scales = [test_scale] + [s for s in tta_scales if s != test_scale]
    return [(s, flip) for s in scales for flip in (False, True)]


def merge_views(per_view: list[ImageDetections], size: tuple[int, int], iou: float = 0.55,
                max_dets: int = 100) -> ImageDetections:
    """One image's detections (original pixels, ``size`` = (height, width)) from each view's: a
    single view as it is, several by weighted boxes fusion (a box found in fewer views scores lower)."""
    if len(per_view) == 1:
        return per_view[0]
    return fuse_detections(per_view, "wbf", iou, size, max_dets)


class Predictor:
    """Trained members and how they are combined (``method``; a single member is itself), run on
    batches of resized images. ``autocast`` wraps the models' forward passes (AMP), nothing else."""

    def __init__(self, models: Sequence[nn.Module], method: str = "shared", fuse_iou: float = 0.55,
                 max_dets: int = 100, autocast: Autocast = contextlib.nullcontext) -> None:
        if not models:
            raise ValueError("a Predictor needs at least one model")
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        check_compatible(list(models))
        self.models = [m.eval() for m in models]
        self.method, self.fuse_iou, self.max_dets, self.autocast = method, fuse_iou, max_dets, autocast
        self.external = self.models[0].proposal_source != "rpn"  # regions come with the images

    def _outputs(self, images: list[Tensor], proposals: list[Tensor] | None,
                 with_members: bool) -> tuple[list[dict] | None, list[list[dict]]]:
        """``(the shared ensemble's outputs per image or None, each member's outputs per image)``
        in the batch's pixels; a single member's outputs are both."""
        with self.autocast():
            if len(self.models) == 1:
                out = self.models[0](images, proposals=proposals)
                return out, [out]
            if self.method == "shared":
                return detect_shared(self.models, images, with_members, external=proposals)
            return None, [m(images, proposals=proposals) for m in self.models]

    @torch.inference_mode()
    def detect(self, images: list[Tensor], proposals: list[Tensor] | None, orig_sizes: list[tuple[int, int]],
               mirrored: bool = False, with_members: bool = False
               ) -> tuple[list[ImageDetections], list[list[ImageDetections]]]:
        """Detections for a batch of resized images (float ``[3, H, W]`` in 0..1, one padded shape;
        ``proposals``: each image's external regions ``[P, 4]`` in its pixels, or None) in the
        original images' pixels (``orig_sizes``: (height, width) each): ``(combined per image, each
        member's per image when ``with_members``, else [])``. ``mirrored``: the view of the mirrored
        images, its boxes mirrored back."""
        sizes = [tuple(im.shape[-2:]) for im in images]
        if mirrored:
            images = [im.flip(-1) for im in images]
            proposals = None if proposals is None else [hflip_xyxy(p, s[1]) for p, s in zip(proposals, sizes)]
        combined, members = self._outputs(images, proposals, with_members)

        def back(out: list[dict]) -> list[ImageDetections]:
            return [rescaled({**o, "boxes": hflip_xyxy(o["boxes"], s[1])} if mirrored else o, osz, s)
                    for o, s, osz in zip(out, sizes, orig_sizes)]

        own = [back(m) for m in members]
        if combined is not None:
            dets = own[0] if len(self.models) == 1 else back(combined)
        else:  # nms / wbf: the members' final detections, fused in the original pixels
            dets = [fuse_detections([o[i] for o in own], self.method, self.fuse_iou, orig_sizes[i], self.max_dets)
                    for i in range(len(images))]
        return dets, (own if with_members else [])


def predict(predictor: Predictor, loader: Iterable, device: torch.device, n_images: int, *, mirrored: bool = False,
            with_members: bool = False, progress: bool = False,
            desc: str = "detect") -> tuple[list[ImageDetections], list[list[ImageDetections]]]:
    """Detections for every image of an unshuffled loader of ``DetBatch`` es (resized by the data
    pipeline), in the original images' pixels, by position: ``(combined, each member's when
    ``with_members``)``. Images that could not be read get no detections."""
    out = [ImageDetections.empty() for _ in range(n_images)]
    members = [[ImageDetections.empty() for _ in range(n_images)] for _ in predictor.models] if with_members else []
    for batch in progress_bar(loader, desc=desc, enabled=progress, leave=False):
        if not batch.images:
            continue
        dets, own = predictor.detect(images_to(batch.images, device), proposals_of(batch.targets, device),
                                     [t["orig_size"] for t in batch.targets], mirrored, with_members)
        for j, t in enumerate(batch.targets):
            out[t["position"]] = dets[j]
            for k in range(len(own)):
                members[k][t["position"]] = own[k][j]
    return out, members
