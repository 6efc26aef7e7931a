"""Detecting a list of image files in shards (``tools/infer.py``): each shard's detections are
written atomically to ``<out>/detections.json.parts/`` as it comes back, so a run that dies is
finished by running it again; ``detections.json`` is assembled once every shard is there, the
same on every engine (:mod:`core.engines`) for the same ``--workers`` and ``--threads``.

A worker loads the members itself (:class:`DetectRecipe`), reads its shard's images, detects
them in batches of the same resized size (:class:`~detector.api.Detector`) and draws each one
into ``<out>/<name>.png``: on a cluster, the images and ``--out`` are at the same path on every
node (a shared file system).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import partial

from core.atomic import write_json_atomic, write_png_atomic
from core.data import read_image
from core.engines import Engine, run_shards
from core.errors import BadImageError, DataError, ShardsFailed
from core.parts import check_settings
from core.progress import progress_bar

from ..api import Detector

SHARD = 16  # images a shard: the unit of resuming and of work handed to a worker


@dataclass(frozen=True)
class DetectRecipe:
    """The members and how to run them; builds, in a worker, the function from a shard to its detections."""

    checkpoints: tuple[str, ...]
    method: str
    min_score: float
    device: str
    draw_to: str | None  # the folder for the drawn images; None: none drawn

    def __call__(self):
        det = Detector.ensemble(list(self.checkpoints), device=self.device, method=self.method,
                                min_score=self.min_score)
        return partial(detect_shard, det, self.draw_to)


def detect_shard(det: Detector, draw_to: str | None, items: list[tuple[int, str]]) -> dict:
    """``items``: (image number 1..N, path). The shard's COCO results (``image_id`` the number,
    ``file_name`` the path), its paths, and the unreadable ones (skipped, with why)."""
    images, kept, skipped = [], [], []
    for k, path in items:
        try:
            images.append(read_image(path))  # read once, for detecting and for drawing
            kept.append((k, path))
        except BadImageError as e:
            skipped.append(str(e))
    results = []
    for (k, path), img, d in zip(kept, images, det(images) if images else []):
        if draw_to is not None:
            stem = os.path.splitext(os.path.basename(path))[0]
            write_png_atomic(os.path.join(draw_to, stem + ".png"), det.draw(img, d)[:, :, ::-1])
        results += [{**r, "file_name": path} for r in d.to_coco(k)]
    return {"paths": [p for _, p in items], "detections": results, "skipped": skipped}


def _shard_path(parts: str, i: int) -> str:
    return os.path.join(parts, f"shard_{i:06d}.json")


def _finished(parts: str, i: int, paths: list[str]) -> dict | None:
    """Shard ``i``'s result when it is on disk, readable and of these images."""
    try:
        with open(_shard_path(parts, i), encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("paths") == paths else None


def detect_files(recipe: DetectRecipe, paths: list[str], out: str, engine: Engine, shard: int = SHARD,
                 progress: bool = True) -> tuple[list[dict], list[str]]:
    """Every image's detections (COCO results, in input order) into ``out/detections.json``, and
    the unreadable images; the drawn images into ``recipe.draw_to``."""
    parts = os.path.join(out, "detections.json.parts")
    settings = {"checkpoints": [os.path.abspath(c) for c in recipe.checkpoints], "method": recipe.method,
                "min_score": recipe.min_score, "draw": recipe.draw_to is not None, "shard": shard,
                "images": len(paths), "paths_sha1": hashlib.sha1("\n".join(paths).encode()).hexdigest()}
    check_settings(parts, settings, DataError)
    shards = [(i, list(enumerate(paths[s:s + shard], s + 1))) for i, s in enumerate(range(0, len(paths), shard))]
    results = {i: _finished(parts, i, [p for _, p in items]) for i, items in shards}
    todo = [(i, items) for i, items in shards if results[i] is None]

    def done(i: int, result: dict) -> None:
        write_json_atomic(_shard_path(parts, i), result)
        results[i] = result

    left = sum(len(items) for _, items in todo)
    failures = run_shards(recipe, todo, engine, done, lambda: progress_bar(
        total=len(paths), initial=len(paths) - left, desc="detect", enabled=progress, unit="img"))
    if failures:
        for f in failures:
            f.items = [p for _, p in f.items]
        raise ShardsFailed("the images", failures, len(shards))
    detections = [d for i, _ in shards for d in results[i]["detections"]]
    write_json_atomic(os.path.join(out, "detections.json"), detections)
    shutil.rmtree(parts)
    return detections, [s for i, _ in shards for s in results[i]["skipped"]]
