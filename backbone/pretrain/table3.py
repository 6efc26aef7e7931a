"""Classification models and their ensemble scored as the paper's Table 3 (§7): every model and
the ensemble at each number of test crops, top-1 and top-5 error and the cost in forward passes
per image.

The ensemble averages each model's softmax, itself averaged over the crops (§7: "the softmax
probabilities are averaged over multiple crops and over all the individual classifiers").
Images are shared out over processes under torchrun; each process scores its share with every
model and the counts are summed, so no prediction crosses processes.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from core.averaging import WeightAverage, recompute_bn
from core.checkpoint import CheckpointError, load_checkpoint
from core.data_report import Collecting, DataReport, publish_all, report_path
from core.errors import UserError
from core.records import log
from core.runtime import amp_for, start

from ..googlenet import GoogLeNet, googlenet_from_file
from .config import PretrainConfig, build_model
from .data import IMAGENET_NORM, ClassificationDataset, Normalisation
from .engine import predict, topk_correct
from .run import bn_images, prepare_data, training_data, val_loader

# Paper Table 3 (top-5 error, ILSVRC 2012 validation; spec §2), for the printed comparison.
PAPER_TABLE3 = [(1, 1, 10.07), (1, 10, 9.15), (1, 144, 7.89), (7, 1, 8.09), (7, 10, 7.62), (7, 144, 6.67)]


def load_for_eval(cfg: PretrainConfig, path: str, num_classes: int, train_ds: ClassificationDataset,
                  device: torch.device) -> tuple[GoogLeNet, Normalisation]:
    """The network in ``path`` and the input normalisation it expects: a training checkpoint (its
    averaged weights when ``export=averaged``), an export ``backbone.pth``, torchvision's file or
    Caffe's ``bvlc_googlenet.caffemodel`` (their metadata say the layout and the input)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        state = None  # not a training checkpoint: a weights file (read_weights says if it is neither)
    if state is not None:
        model = build_model(cfg, num_classes)
        model.load_state_dict(state["model"])
        if cfg.export == "averaged" and cfg.averaging != "none" and state.get("average") is not None:
            average = WeightAverage(model, cfg.averaging, ema_decay=cfg.ema_decay)
            average.load_state_dict(state["average"])
            if average.needs_bn_update:
                images = bn_images(cfg, train_ds, device)
                recompute_bn(average.module.to(device), images, device, cfg.model.channels_last)
            model = average.module
        return model.backbone.to(device), IMAGENET_NORM
    net, meta = googlenet_from_file(path, cfg.model.variant, cfg.model.norm, cfg.model.channels_last)
    if net.num_classes != num_classes:
        raise UserError(f"{path}: {net.num_classes} classes, the validation data has {num_classes}; score it on the "
                        "data it was trained for")
    inp = meta.get("input", {})
    norm = (tuple(inp["mean"]), tuple(inp["std"])) if "mean" in inp and "std" in inp else IMAGENET_NORM
    return net.to(device), norm


def score(cfg: PretrainConfig, paths: list[str], crops: list[int]) -> dict:
    """Table 3 for the models in ``paths`` (and their ensemble when there are several) at each
    number of ``crops``: ``{"rows": [...], "images": N, ...}`` (errors in %)."""
    device, rank, world = start(cfg.device)
    classes, train, val = prepare_data(cfg, rank, world)
    train_ds, _ = training_data(cfg, train, rank, world)
    autocast, _ = amp_for(device, cfg.amp)
    crops = sorted(set(crops))
    correct = torch.zeros(len(paths) + 1, len(crops), 2, dtype=torch.float64)  # models + ensemble
    sums: list[torch.Tensor | None] = [None] * len(crops)
    labels_seen: torch.Tensor | None = None
    for m, path in enumerate(paths):
        net, norm = load_for_eval(cfg, path, len(classes), train_ds, device)
        for j, c in enumerate(crops):
            skipped = DataReport()
            loader = val_loader(cfg, val, rank, world, c, device.type == "cuda", norm)
            probs, labels = predict(net, Collecting(loader, skipped), device, channels_last=cfg.model.channels_last,
                                    autocast=autocast, progress=cfg.progress and rank == 0,
                                    desc=f"{os.path.basename(path)}, {c} crop(s)")
            if m == 0 and j == 0:
                publish_all(skipped, "evaluation", report_path(cfg.out_dir, "table3"), world, rank, log)
            if labels_seen is None:
                labels_seen = labels
            elif not torch.equal(labels, labels_seen):  # the same images in the same order for every pass
                raise UserError(f"{path}: the validation images read differently from the previous pass; rerun")
            correct[m, j] = torch.tensor(topk_correct(probs, labels), dtype=torch.float64)
            sums[j] = probs if sums[j] is None else sums[j] + probs
        del net
    for j in range(len(crops)):
        if sums[j] is not None and labels_seen is not None:
            correct[-1, j] = torch.tensor(topk_correct(sums[j] / len(paths), labels_seen), dtype=torch.float64)
    count = torch.tensor([0 if labels_seen is None else labels_seen.numel()], dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(correct)
        dist.all_reduce(count)
    return {"images": int(count.item()), "models": list(paths), "crops": crops,
            "rows": table_rows(paths, crops, correct, count.item()),
            "paper": [{"models": m, "crops": c, "top5_error": e} for m, c, e in PAPER_TABLE3]}


def table_rows(paths: list[str], crops: list[int], correct: torch.Tensor, n: float) -> list[dict]:
    """One row per model and crop count, then the ensemble's (several models only)."""
    n = max(n, 1.0)
    rows = []
    members = [(name, 1, m) for m, name in enumerate(short_names(paths))]
    if len(paths) > 1:
        members.append((f"ensemble of {len(paths)}", len(paths), len(paths)))
    for name, n_models, m in members:
        for j, c in enumerate(crops):
            top1, top5 = (100.0 - 100.0 * correct[m, j, k].item() / n for k in (0, 1))
            rows.append({"model": name, "models": n_models, "crops": c, "cost": n_models * c,
                         "top1_error": top1, "top5_error": top5})
    base = rows[0]["top5_error"]
    for r in rows:
        r["top5_vs_base"] = r["top5_error"] - base
    return rows


def short_names(paths: list[str]) -> list[str]:
    """Each path's shortest tail (``backbone.pth``, ``run_m1/backbone.pth`` ...) that tells it
    from the others."""
    parts = [os.path.normpath(os.path.abspath(p)).split(os.sep) for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names) or depth == max(len(p) for p in parts):
            return names
    return list(paths)


def format_table(result: dict) -> str:
    """Table 3 as text: our rows, then the paper's for comparison."""
    rows = result["rows"]
    width = max(12, *(len(r["model"]) for r in rows))
    lines = [f"{'model':<{width}} {'models':>6} {'crops':>5} {'cost':>5} {'top-1 err':>9} {'top-5 err':>9} "
             f"{'vs base':>8}"]
    for r in rows:
        lines.append(f"{r['model']:<{width}} {r['models']:>6} {r['crops']:>5} {r['cost']:>5} "
                     f"{r['top1_error']:>8.2f}% {r['top5_error']:>8.2f}% {r['top5_vs_base']:>+7.2f}%")
    lines.append(f"({result['images']} validation images; cost = forward passes per image; the paper's Table 3, "
                 "top-5 error: " + ", ".join(f"{m}x{c} {e:.2f}%" for m, c, e in PAPER_TABLE3) + ")")
    return "\n".join(lines)
