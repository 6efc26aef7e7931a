"""Training checkpoints: written atomically, found again for resuming (the newest one that loads),
and pruned to the newest few."""

from __future__ import annotations

import glob
import os
import re
import sys
import time

import torch

from .atomic import save_atomic
from .errors import UserError

_NAME = re.compile(r"checkpoint_(\d{8})\.pth$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or is not what the tool expects; the message names it."""


def checkpoint_path(work_dir: str, global_step: int) -> str:
    return os.path.join(work_dir, f"checkpoint_{global_step:08d}.pth")


def list_checkpoints(work_dir: str) -> list[str]:
    """Checkpoints in ``work_dir``, newest (highest global step) first."""
    found = [p for p in glob.glob(os.path.join(work_dir, "checkpoint_*.pth")) if _NAME.search(p)]
    return sorted(found, key=lambda p: int(_NAME.search(p).group(1)), reverse=True)


REQUIRED = ("model", "optimizer", "epoch", "step_in_epoch", "global_step")


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint; check resume=... (auto: the newest in the work dir)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or corrupt ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:100] if str(e) else 'no detail'})") from None
    missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint of this tool (missing {', '.join(missing)})")
    return ckpt


def latest_good_checkpoint(work_dir: str, log=lambda msg: print(msg, file=sys.stderr)) -> tuple[str, dict] | None:
    """The newest checkpoint that loads; a corrupt newer one is reported (and left in place for
    inspection) and the previous good one is used."""
    for path in list_checkpoints(work_dir):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            log(f"warning: {e}; trying the previous checkpoint")
    return None


def prune_checkpoints(work_dir: str, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (called only after a new one is safely written)."""
    for path in list_checkpoints(work_dir)[keep:]:
        os.unlink(path)


def set_aside(work_dir: str, also: tuple[str, ...] = ("log.jsonl",)) -> str | None:
    """Move the checkpoints in ``work_dir`` and the files named in ``also`` into a new
    ``work_dir/older_<time>/``, for a run that starts afresh there: its checkpoints would otherwise
    be pruned against an older run's by global step (the older, further ones kept, the new ones
    deleted) and found again on resume, and its log would go on from theirs. Returns the folder,
    or None when there was nothing to move."""
    found = list_checkpoints(work_dir) + [p for n in also if os.path.isfile(p := os.path.join(work_dir, n))]
    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest, n = os.path.join(work_dir, f"older_{stamp}"), 1
    while os.path.exists(dest):  # two fresh starts within a second
        dest, n = os.path.join(work_dir, f"older_{stamp}_{n}"), n + 1
    os.makedirs(dest)
    for path in found:
        os.replace(path, os.path.join(dest, os.path.basename(path)))
    return dest


def find_resume(resume: str, work_dir: str, log=lambda msg: print(msg, file=sys.stderr)) -> tuple[str, dict] | None:
    """``resume``: ``auto`` (the newest good checkpoint in ``work_dir``, if any), ``none``, or a path."""
    if resume == "none":
        return None
    if resume == "auto":
        return latest_good_checkpoint(work_dir, log=log)
    return resume, load_checkpoint(resume)


def restore(state: dict, **stateful) -> tuple[int, int]:
    """Load each part of ``state`` into the object of that name (``model=..., optimizer=...``;
    None objects and absent parts are skipped); return ``(epoch, step_in_epoch)``."""
    for key, obj in stateful.items():
        if obj is not None and state.get(key) is not None:
            obj.load_state_dict(state[key])
    return state["epoch"], state["step_in_epoch"]


def save_training(work_dir: str, keep: int, epoch: int, step_in_epoch: int, global_step: int, extra: dict,
                  **stateful) -> None:
    """A training checkpoint (each object's state dict, the position, ``extra``), written atomically;
    then all but the ``keep`` newest are deleted."""
    state = {key: (obj.state_dict() if obj is not None else None) for key, obj in stateful.items()}
    state.update(extra, epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step)
    save_atomic(state, checkpoint_path(work_dir, global_step))
    prune_checkpoints(work_dir, keep)
