"""The detection config (``DetConfig``: the run, ``data``, ``model``, ``optim``), where a member's
files go, and the one place the config becomes a detector.

The config itself needs no torch: the builders import the model and torch when called, so that
scoring a results file (``eval_map.py --detections``) reads its config without loading them."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from core.config import Amp, ConfigError

from .data.build import DetDataConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .model import GoogLeNetFasterRCNN


@dataclass
class DetModelConfig:
    head: Literal["c4", "fpn"] = "c4"
    bbox_reg: bool = True  # the 2014 entry: false
    weights: str | None = None  # backbone.pth (pretrain_backbone.py), torchvision's file or bvlc_googlenet.caffemodel
    variant: Literal["paper", "torchvision"] = "paper"  # used without weights; an export's metadata wins
    norm: Literal["lrn", "bn"] | None = None
    trainable_from: str | None = "conv2"
    freeze_bn: bool = True
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 300
    rpn_batch_size_per_image: int = 256  # anchors sampled per image for the RPN loss
    box_batch_size_per_image: int = 128  # regions sampled per image for the head's loss
    box_positive_fraction: float = 0.25  # at most this share of them foreground (Fast R-CNN's)
    box_score_thresh: float = 0.01
    box_nms_thresh: float = 0.5  # per-class NMS of the final detections (torchvision's; R-CNN used 0.3)
    box_detections_per_img: int = 100
    # rpn | external (data.proposals only, no RPN: R-CNN, the 2014 entry) | both (data.proposals
    # joined with the RPN's rpn_post_nms_top_n_* boxes: the entry's Selective Search + MultiBox)
    proposals: Literal["rpn", "external", "both"] = "rpn"
    # the RPN's anchor sizes (px), one list per feature map (c4: 1, fpn: 4); null: 32..512 on C4's
    # map, 4x the stride on each pyramid level (32, 64, 128, 256)
    anchor_sizes: list[list[int]] | None = None
    representation_size: int = 1024  # fpn: the box head's MLP width (torchvision's)
    fpn_channels: int = 256  # fpn: the pyramid's width (torchvision's), which the RPN and the box head take
    roi_sampling_ratio: int | None = None  # RoIAlign points per bin side (0: adaptive); null: c4 0, fpn 2
    # fpn: the region head as this many 3x3 conv layers (BN, ReLU) and one fully connected layer
    # (torchvision's fasterrcnn_resnet50_fpn_v2: 4); 0: two fully connected layers (its v1)
    box_head_convs: int = 0
    # test time: the region head scores its own regressed boxes again, this many passes, all joined
    # before NMS (ResNet's ILSVRC 2015 "box refinement"; detector.refine); needs bbox_reg
    box_refine_iters: int = 0
    # test time: each box NMS keeps becomes the score-weighted mean of the candidates of its class
    # that overlap it by this IoU (box voting, detector.refine.vote_xyxy); null: NMS's boxes as they are
    box_vote_iou: float | None = None
    # training: the region head's box loss, and moved copies of each object's box among its
    # regions (detector.heads.RegionHeads)
    box_loss: Literal["smooth_l1", "giou"] = "smooth_l1"
    gt_jitter: int = 0


@dataclass
class DetOptimConfig:
    # sgd (momentum): the Faster R-CNN recipe; adamw: short runs, where it learns far more in the
    # same steps (docs/learning.md, first round); momentum is SGD's only
    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.02  # per lr_reference_batch images, scaled to the global batch
    lr_reference_batch: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # step: lr x gamma at each milestone epoch; cosine: a half cosine from lr to 0 over the epochs
    schedule: Literal["step", "cosine"] = "step"
    milestones: list[float] = field(default_factory=lambda: [8.0, 11.0])  # epochs where lr x gamma (step)
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    grad_clip: float | None = None
    # the weights scored and saved: the exponential moving average of the weights after every step,
    # its decay ramped up to this from the first step (core.averaging); null: the last step's weights
    ema_decay: float | None = None
    # AdamW in one kernel for all parameters (the same update within float rounding), where the
    # per-parameter loop was a seventh of a small CPU step (docs/detector.md)
    fused: bool = True

    def scaled_lr(self, batch_size: int) -> float:
        """``lr`` scaled from ``lr_reference_batch`` images to a global batch of ``batch_size``."""
        return self.lr * batch_size / self.lr_reference_batch


@dataclass
class DetConfig:
    name: str = "googlenet_det"
    work_dir: str = "work_dirs"
    model_index: int = 0  # ensemble member k: its own seed and data order, in <work_dir>/<name>/model_<k>/
    seed: int = 0
    device: str = "auto"
    amp: Amp | bool = "auto"  # auto | bf16 | fp16 | off, as pretraining's (core.runtime.amp_dtype)
    epochs: int = 12
    batch_size: int = 16  # global
    eval_every: int = 1
    eval_metric: Literal["ilsvrc", "voc", "coco"] = "ilsvrc"  # coco: AP over IoU 0.5:0.95, its "map"
    resume: str = "auto"
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    max_steps: int | None = None
    progress: bool = True
    data: DetDataConfig = field(default_factory=DetDataConfig)
    model: DetModelConfig = field(default_factory=DetModelConfig)
    optim: DetOptimConfig = field(default_factory=DetOptimConfig)

    @property
    def out_dir(self) -> str:
        return member_dir(self.work_dir, self.name, self.model_index)

    @property
    def metric_name(self) -> str:
        """What ``eval_metric`` scores, as the logs name it."""
        return "coco AP" if self.eval_metric == "coco" else f"{self.eval_metric} mAP"

    @property
    def member_seed(self) -> int:
        """The paper's six members differ only in data order (and here their initial heads)."""
        return self.seed + 1000 * self.model_index


# Settings that change how a run goes, not what it trains: a finished member is the same member
# whatever these were.
RUNTIME_KEYS = frozenset({"progress", "device", "resume", "checkpoint_every_steps", "keep_checkpoints", "data.workers",
                          "amp", "work_dir", "eval_every", "eval_metric", "data.index_cache", "data.tta_scales"})


# Model keys that act at test time only: eval_map.py takes them from its command line
# (``model.box_vote_iou=0.6``) for a trained member, whose own config otherwise decides.
TEST_TIME_KEYS = ("box_refine_iters", "box_vote_iou", "box_score_thresh", "box_nms_thresh", "box_detections_per_img")


def test_time_overrides(m: DetModelConfig, overrides: list[str]) -> dict[str, object]:
    """The test-time model keys that ``overrides`` (``key=value`` strings) name, with ``m``'s values."""
    named = {o.split("=", 1)[0].strip() for o in overrides}
    return {k: getattr(m, k) for k in TEST_TIME_KEYS if f"model.{k}" in named}


def member_dir(work_dir: str, name: str, k: int) -> str:
    """Ensemble member ``k``'s folder: its checkpoints, log and ``model_final.pth``."""
    return os.path.join(work_dir, name, f"model_{k}")


def build_model(m: DetModelConfig, num_classes: int, layout: dict | None = None) -> GoogLeNetFasterRCNN:
    """The detector ``m`` describes: every ``model`` key is the builder's argument of the same name
    (:func:`detector.model.googlenet_faster_rcnn`, which checks them; a value it refuses is a
    :class:`ConfigError` naming ``model.<key>``). Without ``layout``, for training: the backbone
    from ``m.weights`` (or from scratch), layers before ``m.trainable_from`` frozen. With ``layout``
    (a ``model_final.pth``'s ``backbone_layout``), for loading trained weights into: the same
    network, nothing read from disk, nothing frozen."""
    from .model import SettingError, googlenet_faster_rcnn

    kwargs = dataclasses.asdict(m)
    if layout is not None:
        kwargs.update(weights=None, variant=layout["variant"], norm=layout["norm"], trainable_from=None,
                      transform_input=layout["transform_input"], image_mean=layout["mean"], image_std=layout["std"])
    try:
        return googlenet_faster_rcnn(num_classes, **kwargs)
    except SettingError as e:
        raise ConfigError(f"model.{e}") from None


def build_optimizer(model: nn.Module, o: DetOptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters (the frozen stem and BatchNorm are left out)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "adamw":
        fused = o.fused and all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=o.weight_decay, fused=fused or None)
    return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)


def build_schedule(o: DetOptimConfig, base_lr: float, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """The learning rate at each global step: warm-up, then x ``gamma`` at each milestone epoch, or
    the cosine over ``epochs``."""
    from .engine import lr_at

    return functools.partial(lr_at, steps_per_epoch=steps_per_epoch, base_lr=base_lr, milestones=o.milestones,
                             gamma=o.gamma, warmup_iters=o.warmup_iters, warmup_factor=o.warmup_factor,
                             cosine_epochs=epochs if o.schedule == "cosine" else None)
