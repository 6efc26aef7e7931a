"""Detector training as two plain functions, as torchvision's references/detection/engine.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.errors import NonFiniteLoss
from core.progress import progress_bar
from core.seeding import step_seed
from core.trainer import mean_over_processes, optimizer_step, set_lr

from .data.dataset import images_to
from .evaluation import ImageDetections


def lr_at(global_step: int, steps_per_epoch: int, base_lr: float, milestones: list[float], gamma: float,
          warmup_iters: int, warmup_factor: float) -> float:
    """Step decay (x ``gamma`` at each milestone epoch) after a linear warm-up from
    ``warmup_factor * base_lr`` over ``warmup_iters`` steps."""
    epoch = global_step / steps_per_epoch
    lr = base_lr * gamma ** sum(epoch >= m for m in milestones)
    if global_step < warmup_iters:
        alpha = global_step / warmup_iters
        lr *= warmup_factor * (1 - alpha) + alpha
    return lr


def targets_to(batch_targets: list[dict], device: torch.device) -> list[dict]:
    """The boxes the loss sees: ignored ones (crowds, difficult, blacklisted) are left out, since
    torchvision's R-CNN losses have no notion of "ignore"."""
    out = []
    for t in batch_targets:
        keep = ~t["ignore"]
        out.append({"boxes": t["boxes"][keep].to(device), "labels": t["labels"][keep].to(device)})
    return out


def proposals_of(batch_targets: list[dict], device: torch.device) -> list[torch.Tensor] | None:
    """The batch's external region proposals (``[P, 4]`` per image), or None when it has none."""
    if not batch_targets or "proposals" not in batch_targets[0]:
        return None
    return [t["proposals"].to(device) for t in batch_targets]


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    lr_for_step: Callable[[int], float], *, epoch: int, epochs: int, steps_per_epoch: int,
                    start_step: int, device: torch.device, seed: int, rank: int = 0,
                    scaler: torch.amp.GradScaler | None = None,
                    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                    grad_clip: float | None = None, on_step: Callable[[int, dict], None] | None = None,
                    progress: bool = True, max_steps: int | None = None) -> dict:
    model.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    bar = progress_bar(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{epochs}", enabled=progress)
    step, seen, tic = start_step, 0, time.perf_counter()
    sums: dict[str, float] = {}
    for batch in loader:
        global_step = epoch * steps_per_epoch + step
        if max_steps is not None and global_step >= max_steps:
            break
        step += 1
        if not batch.images:  # every image of this batch was unreadable (reported per epoch)
            bar.update(1)
            continue
        lr = lr_for_step(global_step)
        set_lr(optimizer, lr)
        torch.manual_seed(step_seed(seed, global_step, rank))
        images = images_to(batch.images, device, non_blocking=True)
        targets = targets_to(batch.targets, device)
        with autocast():
            losses = model(images, targets, proposals=proposals_of(batch.targets, device))
        loss = sum(losses.values())
        reported = mean_over_processes(torch.stack([loss.detach().float()] + [v.detach().float()
                                                                               for v in losses.values()]))
        if not torch.isfinite(reported).all():
            raise NonFiniteLoss(f"loss is {reported[0].item()} at epoch {epoch + 1}, step {step} "
                                f"({', '.join(f'{k} {v:.3g}' for k, v in zip(losses, reported[1:].tolist()))})")
        optimizer_step(loss, optimizer, scaler, grad_clip)
        seen += len(images) * world
        stats = {"epoch": epoch, "step": step, "global_step": global_step + 1, "loss": reported[0].item(), "lr": lr,
                 "images_per_s": seen / max(time.perf_counter() - tic, 1e-9),
                 **{k: v for k, v in zip(losses, reported[1:].tolist())}}
        for k, v in stats.items():
            if k.startswith("loss"):
                sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{lr:.2e}", ips=f"{stats['images_per_s']:.1f}")
        bar.update(1)
        if on_step is not None:
            on_step(step, stats)
    bar.close()
    n = max(step - start_step, 1)
    return {"steps_done": step, "images": seen, **{k: v / n for k, v in sums.items()}}


def to_original(target: dict, pred: dict) -> ImageDetections:
    """A prediction on the resized image, in the original image's coordinates."""
    return rescaled(pred, target["orig_size"], target["size"])


def rescaled(pred: dict, orig_size: tuple[int, int], size: tuple[int, int]) -> ImageDetections:
    """A model's output on an image resized from ``orig_size`` to ``size`` (height, width), in the
    original image's pixels."""
    (oh, ow), (h, w) = orig_size, size
    scale = np.array([ow / w, oh / h, ow / w, oh / h], np.float32)
    return ImageDetections(pred["boxes"].float().cpu().numpy() * scale, pred["scores"].float().cpu().numpy(),
                           pred["labels"].cpu().numpy().astype(np.int64))


@torch.inference_mode()
def predict(model: nn.Module, loader: Iterable, device: torch.device, n_images: int,
            autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
            progress: bool = False) -> list[ImageDetections]:
    """Detections for every image of the (unshuffled) ``loader``, in the original image
    coordinates (the data pipeline resized each image once; boxes are scaled back). Images that
    could not be read get no detections."""
    model.eval()
    out = [ImageDetections.empty() for _ in range(n_images)]
    for batch in progress_bar(loader, desc="detect", enabled=progress, leave=False):
        with autocast():
            preds = (model(images_to(batch.images, device), proposals=proposals_of(batch.targets, device))
                     if batch.images else [])
        for t, p in zip(batch.targets, preds):
            out[t["position"]] = to_original(t, p)
    return out
