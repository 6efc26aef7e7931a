"""Each result set's detections, cached on disk (``<set>/detections.npz``) under a key of what they
depend on, so that scoring again is instant and a changed input is never served stale."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from core.atomic import write_atomic

from ..config import DetConfig
from ..evaluation import ImageDetections

# part of the cache key: bump when inference or the ensemble methods change what they produce
DETECTIONS_VERSION = 3


def cache_key(cfg: DetConfig, checkpoints: list[str], method: str | None, precision: str,
              test_time: dict | None = None) -> str:
    """What a set of detections depends on: the checkpoints (path, size, mtime), the data (and where
    it was decoded), the scale, the precision it ran in (fp32, bf16, fp16) and the test-time model
    settings given on the command line (``EvalRequest.test_time``). Not the batch size:
    batches hold images of one padded shape (``shape_batches``), so they compute what batch size 1
    does."""
    parts = [_stat(p) for p in checkpoints]
    d = cfg.data
    external = None
    if cfg.model.proposals != "rpn" and d.proposals:  # the regions scored
        external = [cfg.model.proposals, _stat(d.proposals.format(split=d.val_split)), d.max_proposals]
    decode = ["decode=device"] if d.decode == "device" else []  # another resize's pixels; keys of cpu unchanged
    given = [sorted(test_time.items())] if test_time else []  # none given: the keys as they were
    blob = json.dumps([DETECTIONS_VERSION, parts, method, d.format, os.path.abspath(d.root), d.val_split,
                       d.test_scale, d.max_size, precision] + ([external] if external else []) + decode + given)
    return hashlib.sha1(blob.encode()).hexdigest()


def _stat(path: str) -> tuple:
    return os.path.abspath(path), os.path.getsize(path), os.stat(path).st_mtime_ns


def save_detections(path: str, dets: list[ImageDetections], key: str, seconds: float) -> None:
    counts = np.array([len(d.scores) for d in dets], np.int64)
    write_atomic(path, "wb", lambda f: np.savez(
        f, key=np.array(key), seconds=np.array(seconds), counts=counts,
        boxes=np.concatenate([d.boxes for d in dets]).astype(np.float32).reshape(-1, 4),
        scores=np.concatenate([d.scores for d in dets]).astype(np.float32),
        labels=np.concatenate([d.labels for d in dets]).astype(np.int64)))


def load_detections(path: str, key: str, n_images: int) -> tuple[list[ImageDetections], float] | None:
    """The cached detections when made under ``key`` for this many images; else None."""
    if not os.path.isfile(path):
        return None
    try:
        z = np.load(path)
        if str(z["key"]) != key or len(z["counts"]) != n_images:
            return None
        ends = np.cumsum(z["counts"])
        starts = ends - z["counts"]
        boxes, scores, labels = z["boxes"], z["scores"], z["labels"]
        dets = [ImageDetections(boxes[a:b], scores[a:b], labels[a:b]) for a, b in zip(starts, ends)]
        return dets, float(z["seconds"])
    except Exception:  # a damaged cache is recomputed, never trusted
        return None
