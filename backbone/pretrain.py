"""ImageNet pretraining of GoogLeNet with its auxiliary heads (paper §5-6, spec §2).

``run(cfg)`` reads like the recipe: data -> model -> SGD + schedule + EMA -> (resume) -> epochs of
``train_one_epoch`` and ``evaluate`` -> export of the backbone for the detector.
``tools/pretrain_backbone.py`` parses the command line and calls it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from . import checkpoint as ckpt_io
from .config import ConfigError, to_dict
from .data import (SYNSETS_FILE, ClassificationDataset, DataError, EpochSampler, class_folder_samples, collate,
                   eval_transform, find_classes, official_val_samples, read_synsets, seed_everything,
                   train_transform)
from .engine import NonFiniteLoss, Schedule, ema_model, evaluate, train_one_epoch
from .googlenet import IMAGENET_MEAN, IMAGENET_STD, GoogLeNetWithAux, googlenet, load_weights
from .runtime import amp_for, init_distributed, tune_cpu_allocator
from .toy import make_toy_imagenet


@dataclass
class DataConfig:
    root: str = "data/imagenet"  # ILSVRC2012 CLS-LOC: <root>/train/<wnid>/*.JPEG, <root>/val/...
    train_dir: str = "train"
    val_dir: str = "val"
    val_labels: str | None = None  # official flat val: ILSVRC2012_validation_ground_truth.txt (under root)
    synsets: str | None = None  # wnid/ID list for val_labels (default: the shipped map_clsloc.txt)
    toy: bool = False  # generate the miniature ImageNet at root on first use
    toy_images_per_class: int = 80
    toy_image_size: int = 72
    crop: int = 224
    resize: int = 256  # evaluation: shorter side, then centre crop
    scales: list[int] = field(default_factory=lambda: [256, 288, 320, 352])  # 144-crop scales
    interpolations: list[Literal["linear", "area", "nearest", "cubic"]] = field(
        default_factory=lambda: ["linear", "area", "nearest", "cubic"])
    photometric: float = 0.4
    area: list[float] = field(default_factory=lambda: [0.08, 1.0])  # crop area range (paper: 8-100%)
    workers: int = 4
    on_bad_image: Literal["skip", "error"] = "skip"


@dataclass
class ModelConfig:
    variant: Literal["paper", "torchvision"] = "paper"
    norm: Literal["lrn", "bn"] | None = None  # default: lrn (paper), bn (torchvision)
    dropout: float | None = None  # main head; default 0.4 (paper) / 0.2 (torchvision)
    aux_dropout: float = 0.7
    aux_pool: Literal["paper", "adaptive"] | None = None
    fused: bool = False
    channels_last: bool = True


@dataclass
class OptimConfig:
    lr: float = 0.01  # per lr_reference_batch images (Caffe: 0.01 at batch 32); scaled to the global batch
    lr_reference_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 2e-4  # on weights; Caffe's BVLC model has decay_mult 0 on biases
    schedule: Literal["step", "poly"] = "step"
    step_epochs: float = 8.0
    gamma: float = 0.96
    power: float = 0.5
    warmup_epochs: float = 0.0


@dataclass
class PretrainConfig:
    name: str = "googlenet_imagenet"
    work_dir: str = "work_dirs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # CUDA only: bf16 autocast where supported, else fp16 + grad scaler
    epochs: int = 60
    batch_size: int = 256  # global, over all processes
    eval_every: int = 1  # epochs
    eval_crops: Literal[1, 10, 144] = 1
    ema_decay: float | None = 0.9999  # Polyak averaging; null turns it off
    export: Literal["ema", "raw"] = "ema"
    resume: str = "auto"  # auto (latest good checkpoint in the work dir) | none | a checkpoint path
    checkpoint_every_steps: int = 0  # also checkpoint inside epochs every N steps; 0 = epoch ends only
    keep_checkpoints: int = 2
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs, tests)
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @property
    def out_dir(self) -> str:
        return os.path.join(self.work_dir, self.name)


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def prepare_data(cfg: PretrainConfig, rank: int, world: int) -> tuple[list[str], list, list]:
    """Classes (sorted wnids), training and validation samples; makes the miniature if asked."""
    d = cfg.data
    if d.toy:
        if rank == 0:
            make_toy_imagenet(d.root, n_train=d.toy_images_per_class, n_val=max(10, d.toy_images_per_class // 4),
                              size=d.toy_image_size, seed=cfg.seed)
        if world > 1:
            dist.barrier()
    train_dir = os.path.join(d.root, d.train_dir)
    if not os.path.isdir(train_dir):
        raise DataError(f"no ImageNet at {d.root} (looked for {train_dir}/<wnid>/*.JPEG): point data.root=... at "
                        "your ILSVRC2012 CLS-LOC folder, or run the miniature: python tools/pretrain_backbone.py "
                        "configs/pretrain_toy.yaml")
    classes = find_classes(train_dir)
    train = class_folder_samples(train_dir, classes)
    val_dir = os.path.join(d.root, d.val_dir)
    if d.val_labels:
        synsets = d.synsets or (os.path.join(d.root, "map_clsloc.txt") if d.toy else SYNSETS_FILE)
        val = official_val_samples(val_dir, os.path.join(d.root, d.val_labels), synsets, classes)
    else:
        val = class_folder_samples(val_dir, classes)
    return classes, train, val


def class_names(cfg: PretrainConfig, classes: list[str]) -> list[str]:
    for path in (os.path.join(cfg.data.root, "map_clsloc.txt"), cfg.data.synsets or SYNSETS_FILE):
        if os.path.isfile(path):
            names = {w: n for w, _, n in read_synsets(path)}
            if all(c in names for c in classes):
                return [names[c] for c in classes]
    return list(classes)


def build_model(cfg: PretrainConfig, num_classes: int) -> GoogLeNetWithAux:
    m = cfg.model
    paper_pool = m.aux_pool == "paper" or (m.aux_pool is None and m.variant == "paper")
    if paper_pool and cfg.data.crop != 224:
        raise ConfigError(f"model.aux_pool=paper (the paper's 5x5/3 pooling) needs data.crop=224, not "
                          f"{cfg.data.crop}: set model.aux_pool=adaptive")
    return googlenet(num_classes, variant=m.variant, norm=m.norm, fused=m.fused, dropout=m.dropout,
                     channels_last=m.channels_last, aux=True, aux_pool=m.aux_pool, aux_dropout=m.aux_dropout)


def build_optimizer(model: nn.Module, o: OptimConfig, lr: float) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # biases and BN affine parameters
    return torch.optim.SGD([{"params": decay, "weight_decay": o.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}], lr=lr, momentum=o.momentum)


def val_loader(cfg: PretrainConfig, val: list, rank: int, world: int, crops: int, pin: bool) -> DataLoader:
    d = cfg.data
    ds = ClassificationDataset(val, eval_transform(d.resize, d.crop), seed=cfg.seed, on_bad_image=d.on_bad_image,
                               crops=crops, resize=d.resize, crop=d.crop, scales=tuple(d.scales))
    per_rank = max(1, cfg.batch_size // world // crops)
    shard = list(range(rank, len(ds), world))
    return DataLoader(torch.utils.data.Subset(ds, shard), batch_size=per_rank, num_workers=d.workers,
                      collate_fn=collate, pin_memory=pin)


def export_backbone(path: str, model: GoogLeNetWithAux, cfg: PretrainConfig, classes: list[str],
                    metrics: dict, weights: str) -> None:
    """``backbone.pth``: the backbone's weights (no aux heads, no optimiser state) and what the
    detector needs to use them."""
    b = model.backbone
    meta = {"variant": b.variant, "norm": b.norm, "num_classes": b.num_classes, "transform_input": b.transform_input,
            "input": {"colour": "RGB", "scale": 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "classes": classes, "class_names": class_names(cfg, classes), "weights": weights,
            "top1": metrics.get("main_top1"), "top5": metrics.get("main_top5"), "config": to_dict(cfg)}
    ckpt_io.save_atomic({"state_dict": b.state_dict(), "meta": meta}, path)


def plot_curves(log_path: str, png_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, evals = [], [], []
    with open(log_path) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "train":
                steps.append(rec["global_step"])
                losses.append(rec["loss"])
            elif rec.get("kind") == "eval":
                evals.append(rec)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(steps, losses)
    a.set(xlabel="step", ylabel="loss (main + 0.3 aux)", title="training loss")
    for key, label in (("main_top1", "top-1"), ("main_top5", "top-5"), ("ema_main_top1", "EMA top-1")):
        pts = [(r["epoch"], r[key]) for r in evals if r.get(key) is not None]
        if pts:
            b.plot(*zip(*pts), marker="o", label=label)
    b.set(xlabel="epoch", ylabel="accuracy (%)", title="validation")
    b.legend()
    fig.tight_layout()
    tmp = png_path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


class Records:
    """Rank 0's JSON-lines log and TensorBoard scalars."""

    def __init__(self, out_dir: str, enabled: bool) -> None:
        self.enabled = enabled
        self.path = os.path.join(out_dir, "log.jsonl")
        self.tb = None
        if enabled:
            os.makedirs(out_dir, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(out_dir, "tb"))
            except ImportError:  # TensorBoard is a dependency; run without it rather than fail
                self.tb = None

    def write(self, kind: str, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "time": time.time(), **record}) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step", "global_step"):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def run(cfg: PretrainConfig) -> dict:
    """Train (or resume) and export. Returns the final metrics."""
    started = time.perf_counter()
    device, rank, world = init_distributed(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    if cfg.batch_size % world:
        raise DataError(f"batch_size={cfg.batch_size} must divide among {world} processes")
    classes, train, val = prepare_data(cfg, rank, world)
    out = cfg.out_dir
    d = cfg.data
    pin = device.type == "cuda"

    seed_everything(cfg.seed)  # the same initial weights in every process and every rerun
    model = build_model(cfg, len(classes)).to(device)
    if world > 1 and device.type == "cuda" and model.backbone.norm == "bn":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ema_model(model, cfg.ema_decay) if cfg.ema_decay else None
    base_lr = cfg.optim.lr * cfg.batch_size / cfg.optim.lr_reference_batch
    optimizer = build_optimizer(model, cfg.optim, base_lr)
    autocast, scaler = amp_for(device, cfg.amp)

    train_ds = ClassificationDataset(train, train_transform(d.crop, tuple(d.interpolations), d.photometric,
                                                                     tuple(d.area)),
                                     seed=cfg.seed, on_bad_image=d.on_bad_image)
    sampler = EpochSampler(len(train_ds), cfg.batch_size, cfg.seed, rank, world)
    if sampler.steps() == 0:
        raise DataError(f"{d.root}: {len(train_ds)} training images make no batch of {cfg.batch_size}: lower batch_size")
    o = cfg.optim
    schedule = Schedule(base_lr, cfg.epochs, sampler.steps(), o.schedule, o.step_epochs, o.gamma, o.power,
                        o.warmup_epochs)

    start_epoch, start_step = 0, 0
    found = ckpt_io.find_resume(cfg.resume, out, log=lambda m: _log(rank, m))
    if found is not None:
        start_epoch, start_step = ckpt_io.restore(found[1], model=model, optimizer=optimizer, ema=ema, scaler=scaler)
        _log(rank, f"resuming from {found[0]} (epoch {start_epoch + 1}, step {start_step})")

    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    records = Records(out, rank == 0)

    def save(epoch: int, step_in_epoch: int) -> None:
        if rank == 0:
            ckpt_io.save_training(out, cfg.keep_checkpoints, epoch, step_in_epoch, epoch * sampler.steps() + step_in_epoch,
                                  {"config": to_dict(cfg), "classes": classes}, model=model, optimizer=optimizer,
                                  ema=ema, scaler=scaler)

    def on_step(step: int, stats: dict) -> None:
        records.write("train", stats, stats["global_step"])
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0 and step < sampler.steps():
            save(stats["epoch"], step)

    metrics: dict = {}
    total_steps = cfg.epochs * sampler.steps() if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * sampler.steps())
    epoch = start_epoch
    try:
        while epoch < cfg.epochs and epoch * sampler.steps() + start_step < total_steps:
            sampler.epoch, sampler.start_step, train_ds.epoch = epoch, start_step, epoch
            loader = DataLoader(train_ds, batch_size=cfg.batch_size // world, sampler=sampler, num_workers=d.workers,
                                collate_fn=collate, pin_memory=pin, drop_last=True)
            stats = train_one_epoch(net, loader, optimizer, schedule, epoch=epoch, start_step=start_step,
                                    device=device, seed=cfg.seed, rank=rank, ema=ema, scaler=scaler,
                                    autocast=autocast, channels_last=cfg.model.channels_last, on_step=on_step,
                                    progress=cfg.progress and rank == 0, max_steps=cfg.max_steps)
            skipped = torch.tensor([stats["skipped"]])
            if world > 1:
                dist.all_reduce(skipped)
            if skipped.item():
                _log(rank, f"epoch {epoch + 1}: skipped {skipped.item()} unreadable image(s) (data.on_bad_image=error "
                           "stops at the first, naming it)")
            finished_epoch = stats["steps_done"] >= sampler.steps()
            epoch, start_step = (epoch + 1, 0) if finished_epoch else (epoch, stats["steps_done"])
            save(epoch, start_step)
            last = not (epoch < cfg.epochs and epoch * sampler.steps() + start_step < total_steps)
            if (finished_epoch and epoch % cfg.eval_every == 0) or last:
                metrics = evaluate_all(cfg, model, ema, val, rank, world, device, autocast, crops=cfg.eval_crops)
                records.write("eval", {"epoch": epoch + start_step / sampler.steps(), **metrics},
                              epoch * sampler.steps() + start_step)
                _log(rank, "epoch {}: ".format(epoch) + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()
                                                                  if k.endswith(("top1", "top5"))))
    except NonFiniteLoss as e:
        good = ckpt_io.list_checkpoints(out)
        raise NonFiniteLoss(f"{e}: stopped; lower optim.lr or add optim.warmup_epochs. "
                            f"{'The last good checkpoint is ' + good[0] if good else 'No checkpoint was written'}") from None

    if not metrics:  # resumed a finished run: score it again for the export
        metrics = evaluate_all(cfg, model, ema, val, rank, world, device, autocast, crops=cfg.eval_crops)
    metrics["wall_seconds"] = time.perf_counter() - started
    if rank == 0:
        use_ema = cfg.export == "ema" and ema is not None
        exported = ema.module if use_ema else model
        export_metrics = {k.removeprefix("ema_"): v for k, v in metrics.items() if k.startswith("ema_")} if use_ema else metrics
        export_backbone(os.path.join(out, "backbone.pth"), exported, cfg, classes, export_metrics,
                        "ema" if use_ema else "raw")
        if os.path.isfile(records.path):
            plot_curves(records.path, os.path.join(out, "curves.png"))
        ckpt_io.write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    records.close()
    return metrics


def evaluate_all(cfg: PretrainConfig, model: GoogLeNetWithAux, ema, val: list, rank: int, world: int,
                 device: torch.device, autocast, crops: int) -> dict:
    """The raw weights and, beside them, the EMA weights."""
    loader = val_loader(cfg, val, rank, world, crops, device.type == "cuda")
    kw = dict(channels_last=cfg.model.channels_last, autocast=autocast, progress=cfg.progress and rank == 0)
    metrics = evaluate(model, loader, device, desc="eval", **kw)
    if ema is not None:
        metrics.update({f"ema_{k}": v for k, v in evaluate(ema.module, loader, device, desc="eval EMA", **kw).items()
                        if k.endswith(("top1", "top5"))})
    return metrics


def eval_only(cfg: PretrainConfig, path: str, crops: int) -> dict:
    """Score a training checkpoint (its EMA weights when ``export=ema``) or any GoogLeNet weights
    file, such as the exported ``backbone.pth`` (main head only), with 1, 10 or 144 crops."""
    device, rank, world = init_distributed(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    classes, _, val = prepare_data(cfg, rank, world)
    model = build_model(cfg, len(classes))
    try:
        state = ckpt_io.load_checkpoint(path)
    except ckpt_io.CheckpointError:
        state = None  # not a training checkpoint: a weights file (load_weights says if it is neither)
    if state is not None:
        model.load_state_dict(state["model"])
        if cfg.export == "ema" and state.get("ema") is not None:
            ema = ema_model(model, cfg.ema_decay or 0.9999)
            ema.load_state_dict(state["ema"])
            model = ema.module
        net: nn.Module = model
    else:
        load_weights(model.backbone, path)
        net = _MainOnly(model.backbone)
    net.to(device)
    autocast, _ = amp_for(device, cfg.amp)
    loader = val_loader(cfg, val, rank, world, crops, device.type == "cuda")
    return evaluate(net, loader, device, channels_last=cfg.model.channels_last, autocast=autocast,
                    progress=cfg.progress and rank == 0, desc=f"eval {crops} crop(s)")


class _MainOnly(nn.Module):
    """An exported backbone has no auxiliary heads: score the main head alone."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return (self.backbone(x),)
