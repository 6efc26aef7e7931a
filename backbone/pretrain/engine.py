"""Pretraining as two plain functions, ``train_one_epoch`` and ``evaluate`` (as torchvision's
references/detection/engine.py), plus the learning-rate schedule as a pure function of the step."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from core.averaging import WeightAverage
from core.progress import progress_bar
from core.trainer import train_steps

from ..aux import aux_loss
from .device import images_on


@dataclass
class Schedule:
    """Paper §6: lr x 0.96 every 8 epochs ("step"), or Caffe's "poly" (power 0.5) over the run;
    a linear warm-up from 0 over ``warmup_epochs`` for either."""

    base_lr: float  # already scaled to the global batch
    epochs: int
    steps_per_epoch: int
    kind: str = "step"  # "step" | "poly"
    step_epochs: float = 8.0
    gamma: float = 0.96
    power: float = 0.5
    warmup_epochs: float = 0.0

    def lr_at(self, global_step: int) -> float:
        epoch = global_step / self.steps_per_epoch  # fractional
        if self.kind == "step":
            lr = self.base_lr * self.gamma ** math.floor(epoch / self.step_epochs)
        elif self.kind == "poly":
            lr = self.base_lr * max(0.0, 1.0 - epoch / self.epochs) ** self.power
        else:
            raise ValueError(f"schedule must be 'step' or 'poly', got {self.kind!r}")
        if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
            lr *= epoch / self.warmup_epochs
        return lr


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose label is within the top-k scores, for each k."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # [B, kmax]
    hit = top == labels[:, None]
    return [int(hit[:, :min(k, kmax)].any(1).sum()) for k in ks]


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, schedule: Schedule, *,
                    epoch: int, start_step: int, device: torch.device, seed: int, rank: int = 0,
                    average: WeightAverage | None = None,
                    scaler: torch.amp.GradScaler | None = None,
                    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                    channels_last: bool = False, on_step: Callable[[int, dict], None] | None = None,
                    progress: bool = True, max_steps: int | None = None) -> dict:
    """One pass over ``loader`` (which starts at ``start_step`` of the epoch) through
    ``core.trainer.train_steps``. ``model`` returns ``(logits, aux1, aux2)``; the loss is main +
    0.3 x (aux1 + aux2) (paper §5), its three parts logged. ``average`` (Polyak / EMA) is updated
    after every optimiser step, before ``on_step`` checkpoints."""

    def loss_of(batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], int] | None:
        if batch.labels.numel() == 0:
            return None
        images = images_on(batch.images, device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = batch.labels.to(device, non_blocking=True)
        logits, aux1, aux2 = model(images)
        terms = {"loss_main": F.cross_entropy(logits.float(), labels),
                 "loss_aux1": F.cross_entropy(aux1.float(), labels),
                 "loss_aux2": F.cross_entropy(aux2.float(), labels)}
        return aux_loss(*terms.values()), terms, labels.shape[0]

    def update_average(global_step: int) -> None:
        average.update(model.module if hasattr(model, "module") else model, global_step)

    return train_steps(model, loader, optimizer, schedule.lr_at, loss_of, epoch=epoch, epochs=schedule.epochs,
                       steps_per_epoch=schedule.steps_per_epoch, start_step=start_step, seed=seed, rank=rank,
                       scaler=scaler, autocast=autocast, after_update=update_average if average else None,
                       on_step=on_step, progress=progress, max_steps=max_steps)


def crop_probabilities(backbone: nn.Module, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """Images ``[B, K, 3, H, W]`` (K crops each) -> class probabilities ``[B, C]`` (float32): the
    softmax of the main head averaged over each image's crops (spec §2)."""
    b, k = images.shape[:2]
    flat = images.flatten(0, 1)
    if channels_last:
        flat = flat.contiguous(memory_format=torch.channels_last)
    return backbone(flat).float().softmax(1).view(b, k, -1).mean(1)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Iterable, device: torch.device, *, channels_last: bool = False,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
             progress: bool = False, desc: str = "eval") -> dict:
    """Top-1/top-5 (in %) of the main head and, for single crops, of each auxiliary head.

    ``model`` returns a tuple of logits: ``(logits, aux1, aux2)`` for the pretraining wrapper,
    ``(logits,)`` for a backbone alone; it has a ``backbone`` attribute. Batches of K crops per
    image (``[B, K, 3, H, W]``) are scored by the main head with the softmax averaged over the
    crops (spec §2). Counts are summed over processes when distributed."""
    model.eval()
    backbone = model.backbone
    heads = ("main", "aux1", "aux2")
    correct = torch.zeros(len(heads), 2, dtype=torch.float64)
    count = torch.zeros(1, dtype=torch.float64)
    skipped, n_heads = 0, 1
    for batch in progress_bar(loader, desc=desc, enabled=progress, leave=False):
        skipped += batch.skipped
        if batch.labels.numel() == 0:
            continue
        images = images_on(batch.images, device)
        labels = batch.labels.to(device)
        with autocast():
            if images.dim() == 5:  # test-time crops: main head only, softmax averaged over crops
                probs = crop_probabilities(backbone, images, channels_last)
                correct[0] += torch.tensor(topk_correct(probs, labels), dtype=torch.float64)
            else:
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                outputs = model(images)
                n_heads = len(outputs)
                for h, out in enumerate(outputs):
                    correct[h] += torch.tensor(topk_correct(out.float(), labels), dtype=torch.float64)
        count += labels.shape[0]
    if dist.is_initialized():
        dist.all_reduce(correct)
        dist.all_reduce(count)
    n = max(count.item(), 1.0)
    result = {"images": int(count.item()), "skipped": skipped}
    for h, name in enumerate(heads[:n_heads]):
        result[f"{name}_top1"] = 100.0 * correct[h, 0].item() / n
        result[f"{name}_top5"] = 100.0 * correct[h, 1].item() / n
    return result


@torch.inference_mode()
def predict(backbone: nn.Module, loader: Iterable, device: torch.device, *, channels_last: bool = False,
            autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
            progress: bool = False, desc: str = "predict") -> tuple[torch.Tensor, torch.Tensor]:
    """The main head's class probabilities ``[N, C]`` (float32, on the CPU; the softmax averaged
    over each image's crops, spec §2) and the labels ``[N]``, in the loader's order."""
    backbone.eval()
    probs, labels = [], []
    for batch in progress_bar(loader, desc=desc, enabled=progress, leave=False):
        if batch.labels.numel() == 0:
            continue
        images = images_on(batch.images, device)
        if images.dim() == 4:
            images = images[:, None]  # one crop
        with autocast():
            probs.append(crop_probabilities(backbone, images, channels_last).cpu())
        labels.append(batch.labels)
    if not probs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(probs), torch.cat(labels)
