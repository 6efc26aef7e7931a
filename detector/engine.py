"""Detector training as two plain functions, as torchvision's references/detection/engine.py."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from core.trainer import Autocast, OnStep, train_steps

from .data.dataset import images_to, proposals_of


def lr_at(global_step: int, steps_per_epoch: int, base_lr: float, milestones: list[float], gamma: float,
          warmup_iters: int, warmup_factor: float, cosine_epochs: float | None = None) -> float:
    """Step decay (x ``gamma`` at each milestone epoch), or with ``cosine_epochs`` a half cosine
    from ``base_lr`` to 0 over that many epochs (SGDR without restarts, Loshchilov & Hutter 2017),
    after a linear warm-up from ``warmup_factor * base_lr`` over ``warmup_iters`` steps."""
    epoch = global_step / steps_per_epoch
    if cosine_epochs:
        lr = base_lr * 0.5 * (1 + math.cos(math.pi * min(epoch / cosine_epochs, 1.0)))
    else:
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


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                    lr_for_step: Callable[[int], float], *, epoch: int, epochs: int, steps_per_epoch: int,
                    start_step: int, device: torch.device, seed: int, rank: int = 0,
                    scaler: torch.amp.GradScaler | None = None, autocast: Autocast = contextlib.nullcontext,
                    grad_clip: float | None = None, on_step: OnStep | None = None, progress: bool = True,
                    max_steps: int | None = None, after_update: Callable[[int], None] | None = None) -> dict:
    """One epoch of detector training (``core.trainer.train_steps``): each batch's images and
    targets (and external proposals) through the model, whose losses (RPN and region head) are
    summed and logged term by term; ``after_update(global step)`` after each optimiser step (the
    weights' moving average)."""

    def loss_of(batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], int] | None:
        if not batch.images:
            return None
        images = images_to(batch.images, device, non_blocking=True)
        losses = model(images, targets_to(batch.targets, device), proposals=proposals_of(batch.targets, device))
        return sum(losses.values()), losses, len(images)

    return train_steps(model, loader, optimizer, lr_for_step, loss_of, epoch=epoch, epochs=epochs,
                       steps_per_epoch=steps_per_epoch, start_step=start_step, seed=seed, rank=rank, scaler=scaler,
                       autocast=autocast, grad_clip=grad_clip, after_update=after_update, on_step=on_step,
                       progress=progress, max_steps=max_steps)
