"""ImageNet pretraining of GoogLeNet with its auxiliary heads (paper §5-6, spec §2).

``run(cfg)`` reads like the recipe: data -> model -> SGD + schedule + weight averaging -> (resume)
-> epochs of ``train_one_epoch`` and ``evaluate`` (``core.trainer.Trainer`` keeps the position,
checkpoints and log) -> export of the backbone for the detector. ``table3.score`` scores
checkpoints, exports and their ensemble. ``tools/pretrain_backbone.py`` parses the command line
and calls them.
"""

from __future__ import annotations

import itertools
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from core.atomic import save_atomic, write_json_atomic
from core.averaging import WeightAverage, recompute_bn
from core.config import ConfigError, to_dict
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
from .config import PretrainConfig, build_model, build_optimizer, build_schedule
from .data import (
    IMAGENET_NORM,
    SYNSETS_FILE,
    ClassificationDataset,
    EpochSampler,
    Normalisation,
    class_folder_samples,
    collate,
    eval_transform,
    find_classes,
    official_val_samples,
    photometric_ops,
    train_transform,
)
from .device import images_on
from .engine import evaluate, train_one_epoch
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


def val_loader(cfg: PretrainConfig, val: list, rank: int, world: int, crops: int, pin: bool,
               norm: Normalisation = IMAGENET_NORM) -> DataLoader:
    """This process's share of the validation images (every ``world``-th), ``crops`` crops each."""
    d = cfg.data
    ds = ClassificationDataset(val, eval_transform(d.resize, d.crop, norm), seed=cfg.seed, on_bad_image=d.on_bad_image,
                               crops=crops, resize=d.resize, crop=d.crop, scales=tuple(d.scales), norm=norm)
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
    photometric = photometric_ops(d.photometric, d.jitter, tuple(d.howard_range), d.lighting_std)
    train_ds = ClassificationDataset(train, train_transform(d.crop, tuple(d.interpolations), photometric,
                                                            tuple(d.area)),
                                     seed=cfg.run_seed, on_bad_image=d.on_bad_image, decode=d.decode)
    sampler = EpochSampler(len(train_ds), cfg.batch_size, cfg.run_seed, rank, world)
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

    seed_everything(cfg.run_seed)  # the same initial weights in every process and every rerun
    model = build_model(cfg, len(classes)).to(device)
    if world > 1 and device.type == "cuda" and model.backbone.norm == "bn":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    train_ds, sampler = training_data(cfg, train, rank, world)
    average = build_average(cfg, model, sampler.steps())
    base_lr = cfg.optim.scaled_lr(cfg.batch_size)
    optimizer = build_optimizer(model, cfg.optim, base_lr)
    autocast, scaler = amp_for(device, cfg.amp)

    schedule = build_schedule(cfg, base_lr, sampler.steps())
    trainer = Trainer(cfg.out_dir, steps_per_epoch=sampler.steps(), epochs=cfg.epochs, max_steps=cfg.max_steps,
                      eval_every=cfg.eval_every, checkpoint_every_steps=cfg.checkpoint_every_steps,
                      keep_checkpoints=cfg.keep_checkpoints, rank=rank, world=world,
                      state={"model": model, "optimizer": optimizer, "average": average, "scaler": scaler},
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
                                start_step=start_step, device=device, seed=cfg.run_seed, rank=rank, average=average,
                                scaler=scaler,
                                autocast=autocast, channels_last=cfg.model.channels_last, on_step=on_step,
                                progress=cfg.progress and rank == 0, max_steps=cfg.max_steps)
        publish_all(skipped, f"epoch {epoch + 1}", report_path(cfg.out_dir, f"epoch_{epoch + 1:03d}"), world, rank, log)
        return stats

    def evaluate_epoch(epoch: int) -> dict:
        metrics = evaluate_all(cfg, model, average, val, train_ds, rank, world, device, autocast,
                               crops=cfg.eval_crops, stage=f"evaluation_{epoch:03d}")
        log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.endswith(("top1", "top5"))),
            rank)
        return metrics

    metrics = trainer.fit(train_epoch, evaluate_epoch)
    if not metrics:  # resumed a finished run: score it again for the export
        metrics = evaluate_all(cfg, model, average, val, train_ds, rank, world, device, autocast,
                               crops=cfg.eval_crops)
    metrics["wall_seconds"] = time.perf_counter() - started
    if rank == 0:
        finish(cfg, model, average, classes, metrics, trainer.records.path)
    trainer.close()
    return metrics


def build_average(cfg: PretrainConfig, model: nn.Module, steps_per_epoch: int) -> WeightAverage | None:
    """The averaged weights ``cfg.averaging`` asks for; Polyak's from the last ``polyak_epochs``."""
    if cfg.averaging == "none":
        return None
    if cfg.averaging == "polyak" and cfg.polyak_epochs <= 0:
        raise ConfigError(f"polyak_epochs must be positive, not {cfg.polyak_epochs} (averaging=none turns it off)")
    start = max(0, round((cfg.epochs - cfg.polyak_epochs) * steps_per_epoch)) if cfg.averaging == "polyak" else 0
    try:
        return WeightAverage(model, cfg.averaging, ema_decay=cfg.ema_decay, start_step=start)
    except ValueError as e:  # the decay out of (0, 1)
        raise ConfigError(str(e)) from None


def finish(cfg: PretrainConfig, model: GoogLeNetWithAux, average: WeightAverage | None, classes: list[str],
           metrics: dict, log_path: str) -> None:
    """The outputs of a finished run: ``backbone.pth`` (averaged or raw weights, as ``export``
    says), ``curves.png`` and ``metrics.json``."""
    out = cfg.out_dir
    use_avg = cfg.export == "averaged" and average is not None and average.steps_averaged > 0
    exported = average.module if use_avg else model
    prefix = f"{cfg.averaging}_"
    export_metrics = ({k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)} if use_avg
                      else metrics)
    export_backbone(os.path.join(out, "backbone.pth"), exported, cfg, classes, export_metrics,
                    cfg.averaging if use_avg else "raw")
    if os.path.isfile(log_path):
        averaged = {f"{prefix}main_top1": {"ema": "EMA", "polyak": "Polyak"}.get(cfg.averaging, "") + " top-1"}
        plot_curves(log_path, os.path.join(out, "curves.png"), loss_label="loss (main + 0.3 aux)",
                    eval_keys={"main_top1": "top-1", "main_top5": "top-5", **averaged}, eval_label="accuracy (%)")
    write_json_atomic(os.path.join(out, "metrics.json"), metrics)


def bn_images(cfg: PretrainConfig, train_ds: ClassificationDataset, device: torch.device):
    """The first ``bn_batches`` training batches of epoch 0 (the same in every process), as
    images on ``device``: what a Polyak average's BatchNorm statistics are recomputed on."""
    sampler = EpochSampler(len(train_ds), cfg.batch_size, cfg.run_seed)
    train_ds.epoch = 0
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.data.workers,
                        collate_fn=collate, drop_last=True)
    return (images_on(b.images, device) for b in itertools.islice(loader, cfg.bn_batches))


def evaluate_all(cfg: PretrainConfig, model: GoogLeNetWithAux, average: WeightAverage | None, val: list,
                 train_ds: ClassificationDataset, rank: int, world: int, device: torch.device, autocast, crops: int,
                 stage: str = "evaluation") -> dict:
    """The raw weights and, beside them, the averaged weights (``<averaging>_main_top1`` ...) once
    they average something; the images the first pass could not read are listed under ``stage``
    in the work dir's ``data_report/``."""
    loader = val_loader(cfg, val, rank, world, crops, device.type == "cuda")
    kw = dict(channels_last=cfg.model.channels_last, autocast=autocast, progress=cfg.progress and rank == 0)
    skipped = DataReport()
    metrics = evaluate(model, Collecting(loader, skipped), device, desc="eval", **kw)
    publish_all(skipped, stage.replace("_", " "), report_path(cfg.out_dir, stage), world, rank, log)
    if average is not None and average.steps_averaged > 0:
        if average.needs_bn_update:
            recompute_bn(average.module, bn_images(cfg, train_ds, device), device, cfg.model.channels_last)
        desc = f"eval {cfg.averaging}"
        metrics.update({f"{cfg.averaging}_{k}": v for k, v in evaluate(average.module, loader, device, desc=desc,
                                                                        **kw).items()
                        if k.endswith(("top1", "top5"))})
        metrics[f"{cfg.averaging}_steps"] = average.steps_averaged
    return metrics
