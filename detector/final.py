"""``model_final.pth``, a trained ensemble member: what it holds, written and read in one place,
and where the members of a work dir are.

It holds the weights, the config they were trained with, the classes and their names, the final
metrics, and the backbone's layout (variant, norm, input normalisation), so a trained detector is
rebuilt without the pretraining export it started from.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from core.atomic import save_atomic
from core.checkpoint import CheckpointError
from core.config import load_config_dict, to_dict

from .config import DetConfig, build_model, member_dir

FINAL_NAME = "model_final.pth"
_KEYS = {"model", "config", "classes", "backbone_layout"}


def final_path(work_dir: str, name: str, k: int) -> str:
    return os.path.join(member_dir(work_dir, name, k), FINAL_NAME)


def save_final(path: str, model: nn.Module, cfg: DetConfig, classes: list[str], class_names: list[str],
               metrics: dict) -> None:
    save_atomic({"model": model.state_dict(), "config": to_dict(cfg), "classes": list(classes),
                 "class_names": list(class_names), "metrics": metrics, "backbone_layout": model.backbone_layout}, path)


def read_final(path: str, fix: str) -> dict:
    """The contents of a ``model_final.pth``; an unreadable file is a :class:`CheckpointError`
    whose message ends with ``fix``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}); {fix}") from None
    if not isinstance(state, dict) or not _KEYS <= set(state):
        raise CheckpointError(f"{path}: not a model_final.pth of tools/train_det.py (needs model, config, classes, "
                              "backbone_layout)")
    return state


def load_final(path: str) -> tuple[nn.Module, dict]:
    """A trained detector from its ``model_final.pth``, without the pretraining export it started
    from: ``(model in eval mode, the file's contents with the config as "cfg")``."""
    state = read_final(path, "expected model_final.pth from tools/train_det.py")
    cfg = load_config_dict(DetConfig, state["config"], path)
    model = build_model(cfg.model, len(state["classes"]), layout=state["backbone_layout"])
    model.load_state_dict(state["model"])
    return model.eval(), {**state, "cfg": cfg}


def member_checkpoints(work_dir: str, name: str, n: int) -> list[str]:
    """``model_final.pth`` of members 0..n-1 in ``<work_dir>/<name>``; all must exist."""
    paths = [final_path(work_dir, name, k) for k in range(n)]
    missing = [k for k, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        raise CheckpointError(
            f"{os.path.join(work_dir, name)}: the ensemble needs {n} trained members, missing "
            f"model_{{{','.join(map(str, missing))}}}/{FINAL_NAME}; train each with: "
            "python tools/train_det.py CONFIG model_index=K")
    return paths


def found_members(work_dir: str, name: str) -> list[str]:
    """Every trained member in ``<work_dir>/<name>``, in index order."""
    base = os.path.join(work_dir, name)
    ks = sorted(int(d[6:]) for d in (os.listdir(base) if os.path.isdir(base) else [])
                if d.startswith("model_") and d[6:].isdigit()
                and os.path.isfile(final_path(work_dir, name, int(d[6:]))))
    if not ks:
        raise CheckpointError(f"{base}: no trained model (model_K/{FINAL_NAME}); train one with: "
                              "python tools/train_det.py CONFIG, or name checkpoints with --checkpoints")
    return [final_path(work_dir, name, k) for k in ks]
