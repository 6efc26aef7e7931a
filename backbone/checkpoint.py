"""Checkpoints (and every other output) written atomically (temporary file, fsync, rename), and
checkpoints found again for resuming."""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import tempfile
from typing import Any

import torch

_NAME = re.compile(r"checkpoint_(\d{8})\.pth$")


class CheckpointError(RuntimeError):
    pass


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``: a crash
    leaves either the old file or the new one, never a torn one."""
    write_atomic(path, "wb", lambda f: torch.save(obj, f))


def write_text_atomic(path: str, text: str) -> None:
    """``text`` to ``path`` the same way (JSON reports, results files, split lists)."""
    write_atomic(path, "w", lambda f: f.write(text))


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1))


def write_atomic(path: str, mode: str, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, rename over ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_path(work_dir: str, global_step: int) -> str:
    return os.path.join(work_dir, f"checkpoint_{global_step:08d}.pth")


def list_checkpoints(work_dir: str) -> list[str]:
    """Checkpoints in ``work_dir``, newest (highest global step) first."""
    found = [p for p in glob.glob(os.path.join(work_dir, "checkpoint_*.pth")) if _NAME.search(p)]
    return sorted(found, key=lambda p: int(_NAME.search(p).group(1)), reverse=True)


REQUIRED = ("model", "optimizer", "epoch", "step_in_epoch", "global_step")


def load_checkpoint(path: str) -> dict:
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
