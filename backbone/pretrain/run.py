"""ImageNet pretraining of GoogLeNet with its auxiliary heads (paper §5-6, spec §2).

``run(cfg)`` reads like the recipe: data -> model -> SGD + schedule + EMA -> (resume) -> epochs of
``train_one_epoch`` and ``evaluate`` (``core.trainer.Trainer`` keeps the position, checkpoints and
log) -> export of the backbone for the detector. ``eval_only`` scores a checkpoint or an export
with 1, 10 or 144 crops. ``tools/pretrain_backbone.py`` parses the command line and calls them.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from core.atomic import save_atomic, write_json_atomic
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import to_dict
from core.data import read_synsets
from core.data_report import Collecting, DataReport, publish_all, report_path
from core.errors import DataError
from core.miniature import make_toy_imagenet
from core.records import log, plot_curves
from core.runtime import amp_for, split_batch, start
from core.seeding import seed_everything
from core.trainer import Trainer

from ..aux import GoogLeNetWithAux
from ..googlenet import IMAGENET_MEAN, IMAGENET_STD
from ..weights import load_weights
from .config import PretrainConfig, build_model, build_optimizer, build_schedule
from .data import (
    SYNSETS_FILE,
    ClassificationDataset,
    EpochSampler,
    class_folder_samples,
    collate,
    eval_transform,
    find_classes,
    official_val_samples,
    train_transform,
)
from .engine import ema_model, evaluate, train_one_epoch
from .layout import find_layout


def prepare_data(cfg: PretrainConfig, rank: int, world: int) -> tuple[list[str], list, list]:
    """Classes (sorted wnids), training and validation samples; makes the miniature if asked."""
    d = cfg.data
    if d.toy:
        if rank == 0:
            make_toy_imagenet(d.root, n_train=d.toy_images_per_class, n_val=max(10, d.toy_images_per_class // 4),
                              size=d.toy_image_size, seed=cfg.seed)
        if world > 1:
            dist.barrier()
    where = find_layout(d.root, d.train_dir, d.val_dir, d.val_labels, d.synsets, d.devkit)
    classes = find_classes(where.train_dir)
    train = class_folder_samples(where.train_dir, classes)
    if where.val_labels:
        val = official_val_samples(where.val_dir, where.val_labels, where.synsets or SYNSETS_FILE, classes)
    else:
        val = class_folder_samples(where.val_dir, classes)
    return classes, train, val


def class_names(cfg: PretrainConfig, classes: list[str]) -> list[str]:
    for path in (os.path.join(cfg.data.root, "map_clsloc.txt"), cfg.data.synsets or SYNSETS_FILE):
        if os.path.isfile(path):
            names = {w: n for w, _, n in read_synsets(path)}
            if all(c in names for c in classes):
                return [names[c] for c in classes]
    return list(classes)


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
    save_atomic({"state_dict": b.state_dict(), "meta": meta}, path)


def training_data(cfg: PretrainConfig, train: list, rank: int, world: int) -> tuple[ClassificationDataset,
                                                                                    EpochSampler]:
    d = cfg.data
    train_ds = ClassificationDataset(train, train_transform(d.crop, tuple(d.interpolations), d.photometric,
                                                            tuple(d.area)),
                                     seed=cfg.seed, on_bad_image=d.on_bad_image)
    sampler = EpochSampler(len(train_ds), cfg.batch_size, cfg.seed, rank, world)
    if sampler.steps() == 0:
        raise DataError(f"{d.root}: {len(train_ds)} training images make no batch of {cfg.batch_size}: "
                        "lower batch_size")
    return train_ds, sampler


def run(cfg: PretrainConfig) -> dict:
    """Train (or resume) and export. Returns the final metrics."""
    started = time.perf_counter()
    device, rank, world = start(cfg.device)
    per_process = split_batch(cfg.batch_size, world)
    classes, train, val = prepare_data(cfg, rank, world)
    d = cfg.data

    seed_everything(cfg.seed)  # the same initial weights in every process and every rerun
    model = build_model(cfg, len(classes)).to(device)
    if world > 1 and device.type == "cuda" and model.backbone.norm == "bn":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ema = ema_model(model, cfg.ema_decay) if cfg.ema_decay else None
    base_lr = cfg.optim.scaled_lr(cfg.batch_size)
    optimizer = build_optimizer(model, cfg.optim, base_lr)
    autocast, scaler = amp_for(device, cfg.amp)

    train_ds, sampler = training_data(cfg, train, rank, world)
    schedule = build_schedule(cfg, base_lr, sampler.steps())
    trainer = Trainer(cfg.out_dir, steps_per_epoch=sampler.steps(), epochs=cfg.epochs, max_steps=cfg.max_steps,
                      eval_every=cfg.eval_every, checkpoint_every_steps=cfg.checkpoint_every_steps,
                      keep_checkpoints=cfg.keep_checkpoints, rank=rank, world=world,
                      state={"model": model, "optimizer": optimizer, "ema": ema, "scaler": scaler},
                      extra={"config": to_dict(cfg), "classes": classes},
                      nan_hint="lower optim.lr or add optim.warmup_epochs")
    trainer.resume(cfg.resume)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    def train_epoch(epoch: int, start_step: int, on_step) -> dict:
        sampler.epoch, sampler.start_step, train_ds.epoch = epoch, start_step, epoch
        loader = DataLoader(train_ds, batch_size=per_process, sampler=sampler, num_workers=d.workers,
                            collate_fn=collate, pin_memory=device.type == "cuda", drop_last=True)
        skipped = DataReport()  # this process's; all of them are listed once the epoch ends
        stats = train_one_epoch(net, Collecting(loader, skipped), optimizer, schedule, epoch=epoch,
                                start_step=start_step, device=device, seed=cfg.seed, rank=rank, ema=ema, scaler=scaler,
                                autocast=autocast, channels_last=cfg.model.channels_last, on_step=on_step,
                                progress=cfg.progress and rank == 0, max_steps=cfg.max_steps)
        publish_all(skipped, f"epoch {epoch + 1}", report_path(cfg.out_dir, f"epoch_{epoch + 1:03d}"), world, rank, log)
        return stats

    def evaluate_epoch(epoch: int) -> dict:
        metrics = evaluate_all(cfg, model, ema, val, rank, world, device, autocast, crops=cfg.eval_crops,
                               stage=f"evaluation_{epoch:03d}")
        log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.endswith(("top1", "top5"))),
            rank)
        return metrics

    metrics = trainer.fit(train_epoch, evaluate_epoch)
    if not metrics:  # resumed a finished run: score it again for the export
        metrics = evaluate_all(cfg, model, ema, val, rank, world, device, autocast, crops=cfg.eval_crops)
    metrics["wall_seconds"] = time.perf_counter() - started
    if rank == 0:
        finish(cfg, model, ema, classes, metrics, trainer.records.path)
    trainer.close()
    return metrics


def finish(cfg: PretrainConfig, model: GoogLeNetWithAux, ema, classes: list[str], metrics: dict, log_path: str) -> None:
    """The outputs of a finished run: ``backbone.pth`` (EMA or raw weights, as ``export`` says),
    ``curves.png`` and ``metrics.json``."""
    out = cfg.out_dir
    use_ema = cfg.export == "ema" and ema is not None
    exported = ema.module if use_ema else model
    export_metrics = ({k.removeprefix("ema_"): v for k, v in metrics.items() if k.startswith("ema_")} if use_ema
                      else metrics)
    export_backbone(os.path.join(out, "backbone.pth"), exported, cfg, classes, export_metrics,
                    "ema" if use_ema else "raw")
    if os.path.isfile(log_path):
        plot_curves(log_path, os.path.join(out, "curves.png"), loss_label="loss (main + 0.3 aux)",
                    eval_keys={"main_top1": "top-1", "main_top5": "top-5", "ema_main_top1": "EMA top-1"},
                    eval_label="accuracy (%)")
    write_json_atomic(os.path.join(out, "metrics.json"), metrics)


def evaluate_all(cfg: PretrainConfig, model: GoogLeNetWithAux, ema, val: list, rank: int, world: int,
                 device: torch.device, autocast, crops: int, stage: str = "evaluation") -> dict:
    """The raw weights and, beside them, the EMA weights; the images the first pass could not
    read are listed under ``stage`` in the work dir's ``data_report/``."""
    loader = val_loader(cfg, val, rank, world, crops, device.type == "cuda")
    kw = dict(channels_last=cfg.model.channels_last, autocast=autocast, progress=cfg.progress and rank == 0)
    skipped = DataReport()
    metrics = evaluate(model, Collecting(loader, skipped), device, desc="eval", **kw)
    publish_all(skipped, stage.replace("_", " "), report_path(cfg.out_dir, stage), world, rank, log)
    if ema is not None:
        metrics.update({f"ema_{k}": v for k, v in evaluate(ema.module, loader, device, desc="eval EMA", **kw).items()
                        if k.endswith(("top1", "top5"))})
    return metrics


def eval_only(cfg: PretrainConfig, path: str, crops: int) -> dict:
    """Score a training checkpoint (its EMA weights when ``export=ema``) or any GoogLeNet weights
    file, such as the exported ``backbone.pth`` (main head only), with 1, 10 or 144 crops."""
    device, rank, world = start(cfg.device)
    classes, _, val = prepare_data(cfg, rank, world)
    model = build_model(cfg, len(classes))
    try:
        state = load_checkpoint(path)
    except CheckpointError:
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
    skipped = DataReport()
    metrics = evaluate(net, Collecting(loader, skipped), device, channels_last=cfg.model.channels_last,
                       autocast=autocast, progress=cfg.progress and rank == 0, desc=f"eval {crops} crop(s)")
    publish_all(skipped, "evaluation", report_path(cfg.out_dir, f"eval_only_{crops}crop"), world, rank, log)
    return metrics


class _MainOnly(nn.Module):
    """An exported backbone has no auxiliary heads: score the main head alone."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return (self.backbone(x),)
