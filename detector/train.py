"""Training one detector (one ensemble member): ``run(cfg)`` reads like the recipe. The
checkpointing, records and device handling are pretraining's (``backbone``)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from backbone import checkpoint as ckpt_io
from backbone.config import to_dict
from backbone.data import DataError, seed_everything
from backbone.engine import NonFiniteLoss
from backbone.pretrain import Records
from backbone.runtime import amp_for, init_distributed, tune_cpu_allocator

from .data.build import DetDataConfig, build_detection_data
from .data.dataset import GroupedBatchSampler, collate, with_epoch_report
from .engine import lr_at, predict, train_one_epoch
from .evaluation import evaluate_ilsvrc, evaluate_voc
from .model import googlenet_faster_rcnn


@dataclass
class DetModelConfig:
    head: Literal["c4", "fpn"] = "c4"
    bbox_reg: bool = True  # the 2014 entry: false
    weights: str | None = None  # backbone.pth from tools/pretrain_backbone.py (or torchvision's googlenet file)
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
    box_score_thresh: float = 0.01
    box_detections_per_img: int = 100


@dataclass
class DetOptimConfig:
    lr: float = 0.02  # per lr_reference_batch images, scaled to the global batch
    lr_reference_batch: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: list[float] = field(default_factory=lambda: [8.0, 11.0])  # epochs where lr x gamma
    gamma: float = 0.1
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    grad_clip: float | None = None


@dataclass
class DetConfig:
    name: str = "googlenet_det"
    work_dir: str = "work_dirs"
    model_index: int = 0  # ensemble member k: its own seed and data order, in <work_dir>/<name>/model_<k>/
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    epochs: int = 12
    batch_size: int = 16  # global
    eval_every: int = 1
    eval_metric: Literal["ilsvrc", "voc"] = "ilsvrc"
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
        return os.path.join(self.work_dir, self.name, f"model_{self.model_index}")

    @property
    def member_seed(self) -> int:
        """The paper's six members differ only in data order (and here their initial heads)."""
        return self.seed + 1000 * self.model_index


def build_model(cfg: DetConfig, num_classes: int) -> nn.Module:
    m = cfg.model
    return googlenet_faster_rcnn(num_classes, head=m.head, bbox_reg=m.bbox_reg, weights=m.weights, variant=m.variant,
                                 norm=m.norm, trainable_from=m.trainable_from, freeze_bn=m.freeze_bn,
                                 rpn_pre_nms_top_n_train=m.rpn_pre_nms_top_n_train,
                                 rpn_post_nms_top_n_train=m.rpn_post_nms_top_n_train,
                                 rpn_pre_nms_top_n_test=m.rpn_pre_nms_top_n_test,
                                 rpn_post_nms_top_n_test=m.rpn_post_nms_top_n_test,
                                 rpn_batch_size_per_image=m.rpn_batch_size_per_image,
                                 box_batch_size_per_image=m.box_batch_size_per_image,
                                 box_score_thresh=m.box_score_thresh, box_detections_per_img=m.box_detections_per_img)


def load_final(path: str) -> tuple[nn.Module, dict]:
    """A trained detector from its ``model_final.pth``, without the pretraining export it started
    from: ``(model in eval mode, the file's contents)``."""
    from backbone.config import load_config_dict

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ckpt_io.CheckpointError(f"{path}: unreadable ({type(e).__name__}); expected model_final.pth from "
                                      "tools/train_det.py") from None
    if not isinstance(state, dict) or not {"model", "config", "classes", "backbone_layout"} <= set(state):
        raise ckpt_io.CheckpointError(f"{path}: not a model_final.pth of tools/train_det.py (needs model, config, "
                                      "classes, backbone_layout)")
    cfg = load_config_dict(DetConfig, state["config"], path)
    lay = state["backbone_layout"]
    m = cfg.model
    model = googlenet_faster_rcnn(len(state["classes"]), head=m.head, bbox_reg=m.bbox_reg, weights=None,
                                  variant=lay["variant"], norm=lay["norm"], transform_input=lay["transform_input"],
                                  image_mean=lay["mean"], image_std=lay["std"], trainable_from=None, freeze_bn=m.freeze_bn,
                                  rpn_pre_nms_top_n_test=m.rpn_pre_nms_top_n_test,
                                  rpn_post_nms_top_n_test=m.rpn_post_nms_top_n_test,
                                  box_score_thresh=m.box_score_thresh, box_detections_per_img=m.box_detections_per_img)
    model.load_state_dict(state["model"])
    return model.eval(), {**state, "cfg": cfg}


def score(cfg: DetConfig, model: nn.Module, val_ds, val_index, device, autocast) -> dict:
    loader = DataLoader(val_ds, batch_size=max(1, cfg.batch_size // 4), num_workers=cfg.data.workers, collate_fn=collate)
    dets = predict(model, with_epoch_report(loader, "evaluation"), device, len(val_ds), autocast, cfg.progress)
    n = len(val_index.classes)
    res = (evaluate_ilsvrc(val_index.records, dets, n) if cfg.eval_metric == "ilsvrc"
           else evaluate_voc(val_index.records, dets, n))
    return {"map": res["map"], "ap": [None if a != a else round(float(a), 6) for a in res["ap"]]}


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


# settings that do not change what is trained
_RUNTIME_KEYS = {"progress", "device", "resume", "checkpoint_every_steps", "keep_checkpoints", "data.workers", "amp",
                 "work_dir", "eval_every", "eval_metric"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def finished_metrics(cfg: DetConfig) -> dict | None:
    """A member already trained with this config (``resume=auto`` and its ``model_final.pth`` there):
    its metrics, so that running the same command again costs nothing; a member trained with
    another config is an error rather than silently kept or overwritten."""
    path = os.path.join(cfg.out_dir, "model_final.pth")
    if cfg.resume != "auto" or not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ckpt_io.CheckpointError(f"{path}: unreadable ({type(e).__name__}); delete it to train the member "
                                      "again") from None
    was, now = _flat(state.get("config", {})), _flat(to_dict(cfg))
    changed = sorted(k for k in set(was) | set(now) if k not in _RUNTIME_KEYS and was.get(k) != now.get(k))
    if changed:
        raise ckpt_io.CheckpointError(
            f"{path}: trained with another config ({', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} "
            "differ); delete that folder, or set name=... or model_index=... to train another")
    return state["metrics"]


def run(cfg: DetConfig) -> dict:
    started = time.perf_counter()
    done = finished_metrics(cfg)
    if done is not None:
        _log(int(os.environ.get("RANK", "0")), f"{cfg.out_dir}: already trained (model_final.pth); resume=none "
                                               "retrains it")
        return done
    device, rank, world = init_distributed(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    if cfg.batch_size % world:
        raise DataError(f"batch_size={cfg.batch_size} must divide among {world} processes")
    seed = cfg.member_seed
    train_ds, index = build_detection_data(cfg.data, train=True, seed=seed)
    val_ds, val_index = build_detection_data(cfg.data, train=False, seed=seed)
    for what, idx in (("training data", index), ("validation data", val_index)):
        if idx.report:
            _log(rank, idx.report.summary(f"reading the {what}"))
    if not len(train_ds):
        raise DataError(f"{cfg.data.root}: no training images in split {cfg.data.train_split}")
    out = cfg.out_dir
    seed_everything(seed)
    model = build_model(cfg, len(index.classes)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    base_lr = cfg.optim.lr * cfg.batch_size / cfg.optim.lr_reference_batch
    optimizer = torch.optim.SGD(params, lr=base_lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    autocast, scaler = amp_for(device, cfg.amp)
    sampler = GroupedBatchSampler(train_ds.aspect_ratios(), cfg.batch_size // world, seed=seed, rank=rank, world=world)
    steps = len(sampler)
    if steps == 0:
        raise DataError(f"{cfg.data.root}: {len(train_ds)} training images make no batch of {cfg.batch_size}")
    o = cfg.optim

    def lr_for_step(g: int) -> float:
        return lr_at(g, steps, base_lr, o.milestones, o.gamma, o.warmup_iters, o.warmup_factor)

    start_epoch, start_step = 0, 0
    found = ckpt_io.find_resume(cfg.resume, out, log=lambda m: _log(rank, m))
    if found is not None:
        start_epoch, start_step = ckpt_io.restore(found[1], model=model, optimizer=optimizer, scaler=scaler)
        _log(rank, f"resuming from {found[0]} (epoch {start_epoch + 1}, step {start_step})")
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    records = Records(out, rank == 0)

    def save(epoch: int, step_in_epoch: int) -> None:
        if rank == 0:
            ckpt_io.save_training(out, cfg.keep_checkpoints, epoch, step_in_epoch, epoch * steps + step_in_epoch,
                                  {"config": to_dict(cfg)}, model=model, optimizer=optimizer, scaler=scaler)

    def on_step(step: int, stats: dict) -> None:
        records.write("train", stats, stats["global_step"])
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < steps:
            save(stats["epoch"], step)

    total = cfg.epochs * steps if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps)
    metrics: dict = {}
    epoch = start_epoch
    try:
        while epoch < cfg.epochs and epoch * steps + start_step < total:
            sampler.epoch, sampler.start_step, train_ds.epoch = epoch, start_step, epoch
            loader = DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg.data.workers, collate_fn=collate,
                                pin_memory=device.type == "cuda")
            stats = train_one_epoch(net, with_epoch_report(loader, f"epoch {epoch + 1}", log=lambda t: _log(rank, t)),
                                    optimizer, lr_for_step, epoch=epoch, epochs=cfg.epochs, steps_per_epoch=steps,
                                    start_step=start_step, device=device, seed=seed, rank=rank, scaler=scaler,
                                    autocast=autocast, grad_clip=o.grad_clip, on_step=on_step,
                                    progress=cfg.progress and rank == 0, max_steps=cfg.max_steps)
            finished = stats["steps_done"] >= steps
            epoch, start_step = (epoch + 1, 0) if finished else (epoch, stats["steps_done"])
            save(epoch, start_step)
            last = not (epoch < cfg.epochs and epoch * steps + start_step < total)
            if rank == 0 and ((finished and epoch % cfg.eval_every == 0) or last):
                metrics = score(cfg, model, val_ds, val_index, device, autocast)
                records.write("eval", {"epoch": epoch + start_step / steps, "map": metrics["map"]}, epoch * steps + start_step)
                _log(rank, f"epoch {epoch}: {cfg.eval_metric} mAP {100 * metrics['map']:.2f}")
            if world > 1:
                dist.barrier()
    except NonFiniteLoss as e:
        good = ckpt_io.list_checkpoints(out)
        raise NonFiniteLoss(f"{e}: stopped; lower optim.lr, lengthen optim.warmup_iters or set optim.grad_clip. "
                            f"{'The last good checkpoint is ' + good[0] if good else 'No checkpoint was written'}") from None
    if rank == 0:
        if not metrics:
            metrics = score(cfg, model, val_ds, val_index, device, autocast)
        metrics["wall_seconds"] = time.perf_counter() - started
        ckpt_io.save_atomic({"model": model.state_dict(), "config": to_dict(cfg), "classes": list(index.classes),
                             "class_names": list(index.class_names), "metrics": metrics,
                             "backbone_layout": model.backbone_layout},
                            os.path.join(out, "model_final.pth"))
        ckpt_io.write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    records.close()
    return metrics
