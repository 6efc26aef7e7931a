"""The training skeleton both trainers share (pretraining and detection): resume, the epoch loop
with mid-epoch checkpoints, ``max_steps``, periodic evaluation, the NaN stop and the log.

What is trained, and how one epoch or one evaluation runs, stays with each trainer as plain
functions (``train_one_epoch`` / ``evaluate``, as torchvision's references/detection/engine.py);
a trainer hands :meth:`Trainer.fit` one callable for each:

    trainer = Trainer(out_dir, steps_per_epoch=len(sampler), epochs=cfg.epochs, ...,
                      state={"model": model, "optimizer": optimizer})
    trainer.resume(cfg.resume)
    metrics = trainer.fit(train_epoch, evaluate)    # train_epoch(epoch, start_step, on_step) -> stats
    trainer.close()

Exact resume comes from the position being all there is: a checkpoint holds every object in
``state`` and ``(epoch, step_in_epoch)``; data order and augmentation are functions of the seed
and the position (``core.seeding``), so a resumed run continues with the very batches the
uninterrupted run would have drawn.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import checkpoint as ckpt_io
from .errors import NonFiniteLoss
from .progress import progress_bar
from .records import Records, log
from .seeding import step_seed

OnStep = Callable[[int, dict], None]
Autocast = Callable[[], contextlib.AbstractContextManager]


class Trainer:
    """The position of a run (``epoch``, ``step`` within it) and what is saved at each position.

    Args:
        out_dir: the run's folder: checkpoints, ``log.jsonl``, ``tb/``.
        steps_per_epoch, epochs: the schedule; ``max_steps`` stops earlier (smoke runs, tests).
        eval_every: evaluate after every this many whole epochs, and always at the end.
        checkpoint_every_steps: also checkpoint inside epochs every N steps (0: epoch ends only).
        keep_checkpoints: the newest this many are kept.
        rank, world: this process and how many there are (only rank 0 writes).
        state: what a checkpoint holds, by name (objects with ``state_dict``; None entries are
            saved as None and skipped on restore).
        extra: plain data saved in every checkpoint (the config, the classes).
        nan_hint: what to change when the loss turns non-finite, for the error message.
    """

    def __init__(self, out_dir: str, *, steps_per_epoch: int, epochs: int, max_steps: int | None, eval_every: int,
                 checkpoint_every_steps: int, keep_checkpoints: int, rank: int, world: int, state: dict[str, Any],
                 extra: dict, nan_hint: str) -> None:
        self.out_dir, self.steps_per_epoch, self.epochs = out_dir, steps_per_epoch, epochs
        self.total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
        self.eval_every, self.checkpoint_every_steps, self.keep = eval_every, checkpoint_every_steps, keep_checkpoints
        self.rank, self.world = rank, world
        self.state, self.extra, self.nan_hint = state, extra, nan_hint
        self.epoch, self.step = 0, 0
        self.records = Records(out_dir, rank == 0)

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    def finished(self) -> bool:
        return self.epoch >= self.epochs or self.global_step >= self.total_steps

    def resume(self, how: str) -> None:
        """``how``: ``auto`` (the newest checkpoint in ``out_dir`` that loads, if any), ``none``, or a path."""
        found = ckpt_io.find_resume(how, self.out_dir, log=lambda m: log(m, self.rank))
        if found is not None:
            self.epoch, self.step = ckpt_io.restore(found[1], **self.state)
            log(f"resuming from {found[0]} (epoch {self.epoch + 1}, step {self.step})", self.rank)
        elif self.rank == 0 and (older := ckpt_io.set_aside(self.out_dir)) is not None:
            log(f"starting afresh: the older run's checkpoints and log.jsonl here were moved to {older}")

    def save(self, epoch: int, step_in_epoch: int) -> None:
        if self.rank == 0:
            ckpt_io.save_training(self.out_dir, self.keep, epoch, step_in_epoch,
                                  epoch * self.steps_per_epoch + step_in_epoch, self.extra, **self.state)

    def on_step(self, step: int, stats: dict) -> None:
        """After every optimiser step (``stats`` from ``train_one_epoch``): log it, and checkpoint
        inside the epoch when it is time."""
        self.records.write("train", stats, stats["global_step"])
        every = self.checkpoint_every_steps
        if every and step % every == 0 and step < self.steps_per_epoch:
            self.save(stats["epoch"], step)

    def fit(self, train_epoch: Callable[[int, int, OnStep], dict], evaluate: Callable[[int], dict]) -> dict:
        """Train from the current position to the end, checkpointing after every (part of an)
        epoch. ``train_epoch(epoch, start_step, on_step)`` returns its stats with ``steps_done``
        (the step it stopped at); ``evaluate(epoch)`` returns metrics (``{}`` on processes that
        do not score). Returns the last metrics, ``{}`` when nothing was left to train."""
        metrics: dict = {}
        try:
            while not self.finished():
                stats = train_epoch(self.epoch, self.step, self.on_step)
                whole = stats["steps_done"] >= self.steps_per_epoch
                self.epoch, self.step = (self.epoch + 1, 0) if whole else (self.epoch, stats["steps_done"])
                self.save(self.epoch, self.step)
                if (whole and self.epoch % self.eval_every == 0) or self.finished():
                    metrics = evaluate(self.epoch)
                    self._record_eval(metrics)
                if self.world > 1:
                    dist.barrier()
        except NonFiniteLoss as e:
            good = ckpt_io.list_checkpoints(self.out_dir)
            last = f"The last good checkpoint is {good[0]}" if good else "No checkpoint was written"
            raise NonFiniteLoss(f"{e}: stopped; {self.nan_hint}. {last}") from None
        return metrics

    def _record_eval(self, metrics: dict) -> None:
        if metrics:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            self.records.write("eval", {"epoch": self.epoch + self.step / self.steps_per_epoch, **scalars},
                               self.global_step)

    def close(self) -> None:
        self.records.close()


# -- the step loop every task's train_one_epoch runs ---------------------------------------------

# A task's part of a training step: the batch -> ``(loss to minimise, named loss terms to log (may
# be empty), images in the batch)``, or None when the batch has nothing to train on (every image in
# it was unreadable). Runs under autocast; moves the batch to the device itself.
LossFn = Callable[[Any], "tuple[Tensor, dict[str, Tensor], int] | None"]


def train_steps(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                lr_for_step: Callable[[int], float], loss_of: LossFn, *, epoch: int, epochs: int,
                steps_per_epoch: int, start_step: int, seed: int, rank: int = 0,
                scaler: torch.amp.GradScaler | None = None, autocast: Autocast = contextlib.nullcontext,
                grad_clip: float | None = None, after_update: Callable[[int], None] | None = None,
                on_step: OnStep | None = None, progress: bool = True, max_steps: int | None = None) -> dict:
    """One epoch's steps over ``loader`` (which starts at ``start_step``), the same for every task.

    Each batch is a step of the position: one whose images were all unreadable trains nothing but
    still counts, so an epoch always ends at ``steps_per_epoch`` and a resumed run continues at the
    batch the uninterrupted run would take. For every other batch: the learning rate and the step's
    seed (``core.seeding``) from the global step; ``loss_of`` under ``autocast``; the loss averaged
    over the processes, a non-finite one stopping the run (:class:`NonFiniteLoss`, every process
    alike); backward and the optimiser step; ``after_update(global step)`` (weight averaging), then
    ``on_step(step, stats)`` (the log and mid-epoch checkpoints). Stops after ``max_steps`` in all.
    Returns ``steps_done`` (the position reached), ``images``, ``seconds`` and the mean loss terms."""
    model.train()
    world = dist.get_world_size() if dist.is_initialized() else 1
    bar = progress_bar(total=steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{epochs}", enabled=progress)
    step, trained, seen, tic = start_step, 0, 0, time.perf_counter()
    sums: dict[str, float] = {}
    for batch in loader:
        global_step = epoch * steps_per_epoch + step
        if max_steps is not None and global_step >= max_steps:
            break
        step += 1
        lr = lr_for_step(global_step)
        set_lr(optimizer, lr)
        torch.manual_seed(step_seed(seed, global_step, rank))
        with autocast():
            out = loss_of(batch)
        if out is None:  # every image of the batch unreadable (the data report lists them)
            bar.update(1)
            continue
        loss, terms, n = out
        parts = [loss, *terms.values()]
        reported = mean_over_processes(torch.stack([v.detach().float() for v in parts]))
        if not torch.isfinite(reported).all():
            detail = ", ".join(f"{k} {v:.3g}" for k, v in zip(terms, reported[1:].tolist()))
            raise NonFiniteLoss(f"loss is {reported[0].item()} at epoch {epoch + 1}, step {step} (global step "
                                f"{global_step + 1}{'; ' + detail if detail else ''})")
        optimizer_step(loss, optimizer, scaler, grad_clip)
        if after_update is not None:
            after_update(global_step + 1)
        trained, seen = trained + 1, seen + n * world
        stats = {"epoch": epoch, "step": step, "global_step": global_step + 1, "loss": reported[0].item(), "lr": lr,
                 "images_per_s": seen / max(time.perf_counter() - tic, 1e-9),
                 **dict(zip(terms, reported[1:].tolist()))}
        for k in ("loss", *terms):
            sums[k] = sums.get(k, 0.0) + stats[k]
        bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{lr:.2e}", ips=f"{stats['images_per_s']:.1f}")
        bar.update(1)
        if on_step is not None:
            on_step(step, stats)
    bar.close()
    return {"steps_done": step, "images": seen, "seconds": time.perf_counter() - tic,
            **{k: v / max(trained, 1) for k, v in sums.items()}}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group at ``lr`` times its ``lr_mult`` (1 if it has none; Caffe's per-blob multiplier)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def mean_over_processes(t: Tensor) -> Tensor:
    """``t`` (a fresh tensor: reduced in place) averaged over the processes. Every process then
    sees the same loss, so a NaN on one of them stops all of them together."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def optimizer_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
                   grad_clip: float | None = None) -> None:
    """Backward and step, through the AMP gradient scaler when there is one; with ``grad_clip``,
    the gradient norm of the optimiser's parameters is clipped to it (unscaled first)."""
    optimizer.zero_grad(set_to_none=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
