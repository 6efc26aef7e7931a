"""GoogLeNet inside torchvision's Faster R-CNN (region proposal network + per-region classifier).

Two heads (spec §3):

* ``head="c4"`` — the paper's entry in today's form: the trunk conv1 .. inception 4e (stride 16,
  832 channels) feeds the RPN; each region is RoI-aligned to 14x14, max-pooled 3x3/2 (pool4),
  passed through inception 5a and 5b, averaged, and classified over the classes plus background,
  with box regression (``bbox_reg=True``) or without it, as the 2014 entry (``bbox_reg=False``).
* ``head="fpn"`` — taps 3b / 4e / 5b, a feature pyramid, torchvision's two-layer MLP box head.

Anchors and RoI pooling are derived from the backbone's ``feature_info`` (the usual trap with
custom torchvision backbones: one anchor-size tuple per feature map, and ``featmap_names`` that
match the backbone's output keys). The image is resized once, by the data pipeline
(``detector.data.transforms``); the R-CNN transform here only normalises and batches.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from backbone.googlenet import IMAGENET_MEAN, IMAGENET_STD, GoogLeNet, googlenet, googlenet_from_file, split_at

from .heads import BoxLoss, RegionHeads
from .refine import detect_regions, head_outputs

Head = Literal["c4", "fpn"]
# where the regions come from: the RPN; precomputed boxes only (R-CNN, the 2014 entry's Selective
# Search: no RPN at all); or both, joined (the entry's Selective Search + 200 MultiBox boxes, the RPN
# standing in for MultiBox)
ProposalSource = Literal["rpn", "external", "both"]


class SettingError(ValueError):
    """A builder argument that cannot be used: ``"<key>=<value>: <why>"``. The key is the argument's
    name, which is also the config key under ``model`` (``detector.config.build_model`` reports it
    as ``model.<key>``)."""

    def __init__(self, key: str, value: object, why: str) -> None:
        super().__init__(f"{key}={value!r}: {why}")
        self.key = key


class NoResizeTransform(GeneralizedRCNNTransform):
    """torchvision's R-CNN transform without its resize: the data pipeline has already resized
    each image once (resizing twice would blur it and shift every box by rounding)."""

    def resize(self, image: Tensor, target=None):  # type: ignore[override]
        return image, target


class C4Trunk(nn.Module):
    """conv1 .. inception 4e as a torchvision detection backbone: ``{"0": [N, 832, H/16, W/16]}``."""

    def __init__(self, net: GoogLeNet) -> None:
        super().__init__()
        self.body, _ = split_at(net, "4e")
        info = {i.name: i for i in net.feature_info}["4e"]
        self.out_channels, self.stride = info.channels, info.stride

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([("0", self.body(x))])


class C4BoxHead(nn.Module):
    """The rest of GoogLeNet per region: 14x14 RoI -> pool4 (3x3/2) -> 5a -> 5b -> global average."""

    def __init__(self, net: GoogLeNet) -> None:
        super().__init__()
        _, self.body = split_at(net, "4e")
        self.out_channels = net.out_channels  # 1024

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.body(x), 1), 1)  # [K, 1024]


# Box deltas and scores leave the heads in fp32: under autocast they would be bf16/fp16, and
# torchvision's BoxCoder.decode casts the anchors and proposals to the deltas' dtype
# (``boxes.to(rel_codes.dtype)``), which rounds every box to 8 significant bits in bf16 (steps of
# 2 px at 300-500 px).
class RPNHeadFP32(RPNHead):
    """torchvision's RPN head, its objectness and deltas in fp32 (same parameters and keys)."""

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


class FastRCNNPredictorFP32(FastRCNNPredictor):
    """torchvision's region predictor, its class logits and box deltas in fp32."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        scores, deltas = super().forward(x)
        return scores.float(), deltas.float()


class ClassOnlyPredictor(nn.Module):
    """The 2014 entry used no bounding-box regression: class scores only; the box deltas are
    zeros (constant, so the regression loss carries no gradient and proposals pass unchanged)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x).float(), x.new_zeros(x.shape[0], self.num_classes * 4, dtype=torch.float32)


class FPNBackbone(nn.Module):
    """Taps 3b / 4e / 5b through a feature pyramid (256 channels) plus a max-pooled level."""

    TAPS = ("3b", "4e", "5b")

    def __init__(self, net: GoogLeNet, out_channels: int = 256) -> None:
        super().__init__()
        # the classifier would be a parameter no loss reaches: DDP (without find_unused_parameters)
        # then never reduces the gradient bucket holding it, and silently leaves that bucket's
        # gradients per-process
        net.fc = nn.Identity()
        self.net = net
        info = {i.name: i for i in net.feature_info}
        self.fpn = FeaturePyramidNetwork([info[t].channels for t in self.TAPS], out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.strides = [info[t].stride for t in self.TAPS] + [info[self.TAPS[-1]].stride * 2]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        feats = self.net.forward_features(x, self.TAPS)
        return self.fpn(OrderedDict((str(k), v) for k, v in enumerate(feats.values())))


class GoogLeNetFasterRCNN(FasterRCNN):
    """torchvision's FasterRCNN with the data pipeline's single resize (:class:`NoResizeTransform`),
    and what rebuilding it needs: ``head_kind``, ``bbox_reg`` and ``backbone_layout`` (variant,
    norm, ``transform_input``, input mean and std). Without box regression its constant
    ``loss_box_reg`` (zero deltas against the targets: no gradient) is left out of the losses
    rather than logged as if it meant something."""

    def __init__(self, backbone: nn.Module, *, head_kind: Head, bbox_reg: bool, backbone_layout: dict,
                 image_mean: list[float], image_std: list[float], proposal_source: ProposalSource = "rpn",
                 box_refine_iters: int = 0, box_vote_iou: float | None = None, box_loss: BoxLoss = "smooth_l1",
                 gt_jitter: int = 0, **faster_rcnn_args) -> None:
        super().__init__(backbone, image_mean=image_mean, image_std=image_std, **faster_rcnn_args)
        self.roi_heads = RegionHeads.like(self.roi_heads, box_loss=box_loss, gt_jitter=gt_jitter)  # detector.heads
        self.transform = NoResizeTransform(min_size=1, max_size=1 << 30, image_mean=image_mean, image_std=image_std)
        self.head_kind, self.bbox_reg = head_kind, bbox_reg
        self.backbone_layout = backbone_layout
        self.proposal_source = proposal_source
        self.box_refine_iters, self.box_vote_iou = self._refinement(box_refine_iters, box_vote_iou)  # detector.refine
        if proposal_source == "external":
            self.rpn = None  # no parameters that no loss reaches (DDP would wait for their gradients)

    def forward(self, images, targets=None, proposals: list[Tensor] | None = None):  # type: ignore[override]
        """torchvision's: the losses in training, the detections per image in eval. ``proposals``
        (``[P, 4]`` xyxy per image, in the resized image's pixels) are required with external
        proposals and ignored with the RPN's."""
        if self.proposal_source == "rpn" and (self.training or not self._test_time_steps):
            out = super().forward(images, targets)
        else:
            out = self._forward_regions(images, targets, proposals)
        if self.training and not self.bbox_reg:
            out.pop("loss_box_reg", None)
        return out

    def set_test_time(self, box_refine_iters: int, box_vote_iou: float | None, box_score_thresh: float,
                      box_nms_thresh: float, box_detections_per_img: int) -> None:
        """The test-time settings of the builder's arguments of the same names, for a trained model."""
        self.box_refine_iters, self.box_vote_iou = self._refinement(box_refine_iters, box_vote_iou)
        heads = self.roi_heads
        heads.score_thresh, heads.nms_thresh, heads.detections_per_img = (box_score_thresh, box_nms_thresh,
                                                                          box_detections_per_img)

    def test_time(self) -> dict:
        """The settings :meth:`set_test_time` takes, as they are."""
        heads = self.roi_heads
        return {"box_refine_iters": self.box_refine_iters, "box_vote_iou": self.box_vote_iou,
                "box_score_thresh": heads.score_thresh, "box_nms_thresh": heads.nms_thresh,
                "box_detections_per_img": heads.detections_per_img}

    def _refinement(self, box_refine_iters: int, box_vote_iou: float | None) -> tuple[int, float | None]:
        if box_refine_iters < 0 or (box_refine_iters and not self.bbox_reg):
            raise SettingError("box_refine_iters", box_refine_iters, "a count >= 0, and 0 without bbox_reg (a region "
                               "head that does not regress never moves a box)")
        if box_vote_iou is not None and not 0.0 < box_vote_iou <= 1.0:
            raise SettingError("box_vote_iou", box_vote_iou, "an IoU in (0, 1], or null for no voting")
        return box_refine_iters, box_vote_iou

    @property
    def _test_time_steps(self) -> bool:
        """Whether detection goes through :mod:`detector.refine` (refinement or voting)."""
        return bool(self.box_refine_iters) or self.box_vote_iou is not None

    def _forward_regions(self, images, targets, proposals):
        """GeneralizedRCNN's forward with the regions made explicit: given ones (joined with the
        RPN's for ``both``) and, in eval, box refinement. As in R-CNN training, the region head adds
        the ground truth to given regions and samples foreground and background by the usual IoU rules."""
        external = self.proposal_source != "rpn"
        if external and (proposals is None or len(proposals) != len(images)):
            raise ValueError(f"model.proposals={self.proposal_source}: pass proposals=[boxes [P, 4]] for each image")
        sizes = [img.shape[-2:] for img in images]
        batch, targets = self.transform(images, targets)
        features = self.backbone(batch.tensors)
        boxes = [p.to(batch.tensors.device, torch.float32) for p in proposals] if external else []
        if external and self.training:  # an image without regions (a negative whose proposals were
            # lost) still gives the loss its whole frame as background, rather than a batch of nothing (NaN)
            boxes = [b if len(b) else b.new_tensor([[0.0, 0.0, float(w), float(h)]])
                     for b, (h, w) in zip(boxes, batch.image_sizes)]
        losses = {}
        if self.rpn is not None:
            rpn_boxes, losses = self.rpn(batch, features, targets)
            boxes = [torch.cat([b, r]) for b, r in zip(boxes, rpn_boxes)] if external else rpn_boxes
        if self.training:
            return {**losses, **self.roi_heads(features, boxes, batch.image_sizes, targets)[1]}
        if self._test_time_steps:
            detections = detect_regions(self, lambda r: head_outputs(self, features, r, batch.image_sizes), boxes,
                                        batch.image_sizes)
        else:
            detections = self.roi_heads(features, boxes, batch.image_sizes)[0]
        return self.transform.postprocess(detections, batch.image_sizes, sizes)


def anchor_sizes_for(strides: list[int], base: int = 32) -> tuple[tuple[int, ...], ...]:
    """One anchor-size tuple per feature map: the C4 map (one stride) gets the five classic sizes,
    pyramid levels get one size each, 4x their stride (32 px at stride 8)."""
    if len(strides) == 1:
        return ((base, base * 2, base * 4, base * 8, base * 16),)
    return tuple((4 * s,) for s in strides)


def anchor_generator(head: Head, strides: list[int], anchor_sizes: list[list[int]] | None) -> AnchorGenerator:
    """The RPN's anchors: ``anchor_sizes`` (one list per feature map) or :func:`anchor_sizes_for`,
    each at aspect ratios 0.5, 1 and 2."""
    sizes = anchor_sizes_for(strides) if anchor_sizes is None else tuple(tuple(int(a) for a in s) for s in anchor_sizes)
    if len(sizes) != len(strides) or not all(sizes):
        raise SettingError("anchor_sizes", anchor_sizes, f"the {head} head has {len(strides)} feature map(s) "
                           f"(strides {', '.join(map(str, strides))}): give one non-empty list of sizes per map")
    return AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))


def _backbone_net(weights: str | os.PathLike | None, variant: str, norm: str | None,
                  transform_input: bool = False) -> tuple[GoogLeNet, dict]:
    """The GoogLeNet to build on, and the export's metadata (variant, norm, input normalisation)."""
    if weights is None:
        return googlenet(1000, variant=variant, norm=norm, transform_input=transform_input), {}
    return googlenet_from_file(weights, variant, norm)


def freeze(net: GoogLeNet, trainable_from: str | None, freeze_bn: bool) -> None:  # noqa: D401
    """Freeze the layers before ``trainable_from`` (a layer name such as ``"conv2"`` or
    ``"inception3a"``; None trains everything) and, with ``freeze_bn``, every BatchNorm (running
    statistics and affine parameters: detection batches are too small to estimate them)."""
    if trainable_from is not None:
        if trainable_from not in net._LAYERS:
            raise SettingError("trainable_from", trainable_from, f"not a layer; layers: {', '.join(net._LAYERS)}")
        for name in net._LAYERS[: net._LAYERS.index(trainable_from)]:
            getattr(net, name).requires_grad_(False)
    if freeze_bn:
        _freeze_batchnorm(net)


def _freeze_batchnorm(module: nn.Module) -> None:
    """Swap every BatchNorm2d for torchvision's FrozenBatchNorm2d with the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


def _region_parts(net: GoogLeNet, head: Head, representation_size: int = 1024, fpn_channels: int = 256,
                  roi_sampling_ratio: int | None = None, box_head_convs: int = 0
                  ) -> tuple[nn.Module, list[int], MultiScaleRoIAlign, nn.Module, int]:
    """``(detection backbone, its strides, RoI pooling, box head, box head's output width)``."""
    if head == "c4":
        body = C4Trunk(net)
        box_head = C4BoxHead(net)
        # adaptive sampling (ceil(region size / 14) points per bin), detectron2's C4 setting: most
        # regions get one point a bin, and torchvision's CPU roi_align backward (serial) costs half as
        # much as with the fixed 2x2
        ratio = 0 if roi_sampling_ratio is None else roi_sampling_ratio
        roi = MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=ratio)
        return body, [body.stride], roi, box_head, box_head.out_channels
    body = FPNBackbone(net, fpn_channels)
    # the max-pooled level feeds the RPN only; 2x2 points a bin, torchvision's
    ratio = 2 if roi_sampling_ratio is None else roi_sampling_ratio
    roi = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=ratio)
    c = body.out_channels
    if box_head_convs:  # torchvision's fasterrcnn_resnet50_fpn_v2 head: 3x3 convs + BN, one FC layer
        box_head = FastRCNNConvFCHead((c, 7, 7), [c] * box_head_convs, [representation_size], nn.BatchNorm2d)
    else:
        box_head = TwoMLPHead(c * 7 * 7, representation_size)
    return body, body.strides, roi, box_head, representation_size


def _check_choices(num_classes: int, head: str, proposals: str, box_loss: str, gt_jitter: int,
                   box_head_convs: int) -> None:
    for name, value, allowed in (("head", head, ("c4", "fpn")), ("proposals", proposals, ("rpn", "external", "both")),
                                 ("box_loss", box_loss, ("smooth_l1", "giou"))):
        if value not in allowed:
            raise SettingError(name, value, f"must be {' or '.join(map(repr, allowed))}")
    if gt_jitter < 0:
        raise SettingError("gt_jitter", gt_jitter, "a count >= 0")
    if box_head_convs < 0 or (box_head_convs and head != "fpn"):
        raise SettingError("box_head_convs", box_head_convs, "a count >= 0, for head=fpn (C4's head is inception 5)")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")


def googlenet_faster_rcnn(num_classes: int, head: Head = "c4", bbox_reg: bool = True,
                          weights: str | os.PathLike | None = None, variant: str = "paper", norm: str | None = None,
                          trainable_from: str | None = "conv2", freeze_bn: bool = True,
                          rpn_pre_nms_top_n_train: int = 2000, rpn_post_nms_top_n_train: int = 2000,
                          rpn_pre_nms_top_n_test: int = 1000, rpn_post_nms_top_n_test: int = 300,
                          rpn_batch_size_per_image: int = 256, box_batch_size_per_image: int = 128,
                          box_positive_fraction: float = 0.25, box_score_thresh: float = 0.01,
                          box_nms_thresh: float = 0.5, box_detections_per_img: int = 100,
                          transform_input: bool = False, image_mean: list[float] | None = None,
                          image_std: list[float] | None = None, proposals: ProposalSource = "rpn",
                          anchor_sizes: list[list[int]] | None = None, representation_size: int = 1024,
                          fpn_channels: int = 256, roi_sampling_ratio: int | None = None,
                          box_refine_iters: int = 0, box_vote_iou: float | None = None, box_loss: BoxLoss = "smooth_l1",
                          gt_jitter: int = 0, box_head_convs: int = 0) -> GoogLeNetFasterRCNN:
    """Faster R-CNN with a GoogLeNet backbone.

    Args:
        num_classes: object classes, background excluded (the model predicts ``num_classes + 1``).
        head: ``"c4"`` (the entry's Inception region head) or ``"fpn"``; bbox_reg: regress boxes (2014: no).
        weights: ``backbone.pth`` from ``tools/pretrain_backbone.py`` (its metadata sets the layout
            and the input normalisation), or torchvision's ``googlenet-1378be20.pth``; None starts
            from scratch (``variant``, ``norm``, ``transform_input``, ``image_mean``/``std``).
        trainable_from: the first trainable layer (None: all); freeze_bn: BatchNorm kept fixed (BN layouts).
        proposals: ``"rpn"``, ``"external"`` (the caller passes each image's regions, no RPN) or
            ``"both"`` (the given regions joined with the RPN's ``post_nms_top_n``).
        anchor_sizes: the RPN's anchor sizes (px), a list per feature map (C4: 1; FPN: 4, strides 8..64).
        representation_size, fpn_channels, roi_sampling_ratio, box_head_convs: the FPN head's MLP width
            (C4's is 1024), the pyramid's width (torchvision's 1024, 256); RoIAlign's points a bin side
            (0: adaptive); 3x3 conv + BN layers before one FC layer (``FastRCNNConvFCHead``; 0: two FC).
        box_refine_iters, box_vote_iou: test time (:mod:`detector.refine`): passes of the region head over
            its regressed boxes (needs ``bbox_reg``), and box voting at that IoU (None: no voting).
        box_loss, gt_jitter: training (:class:`detector.heads.RegionHeads`): the region head's box loss
            (``"smooth_l1"``, ``"giou"``), and moved copies of each object's box among its regions.
        The rest are torchvision's ``FasterRCNN`` settings of the same names.
    """
    _check_choices(num_classes, head, proposals, box_loss, gt_jitter, box_head_convs)
    net, meta = _backbone_net(weights, variant, norm, transform_input)
    freeze(net, trainable_from, freeze_bn)
    given = meta.get("input", {})  # an export's normalisation wins
    mean, std = list(given.get("mean", image_mean or IMAGENET_MEAN)), list(given.get("std", image_std or IMAGENET_STD))
    body, strides, roi, box_head, rep = _region_parts(net, head, representation_size, fpn_channels,
                                                      roi_sampling_ratio, box_head_convs)
    anchors = anchor_generator(head, strides, anchor_sizes)
    predictor = FastRCNNPredictorFP32(rep, num_classes + 1) if bbox_reg else ClassOnlyPredictor(rep, num_classes + 1)
    model = GoogLeNetFasterRCNN(
        body, head_kind=head, bbox_reg=bbox_reg, image_mean=mean, image_std=std,
        backbone_layout={"variant": net.variant, "norm": net.norm, "transform_input": net.transform_input,
                         "mean": mean, "std": std},
        rpn_anchor_generator=anchors, rpn_head=RPNHeadFP32(body.out_channels, anchors.num_anchors_per_location()[0]),
        box_roi_pool=roi, box_head=box_head, box_predictor=predictor,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=rpn_batch_size_per_image, box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=box_positive_fraction, box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
        box_detections_per_img=box_detections_per_img, proposal_source=proposals, box_refine_iters=box_refine_iters,
        box_vote_iou=box_vote_iou, box_loss=box_loss, gt_jitter=gt_jitter)
    # the contract, checked here rather than as a shape error mid-training (a size list per feature map)
    if model.rpn is not None and model.rpn.head.cls_logits.out_channels != anchors.num_anchors_per_location()[0]:
        raise AssertionError("anchor generator does not match the backbone's feature maps")
    return model
