"""Scoring trained detectors and their ensemble (``tools/eval_map.py``): inference with each
model's detections cached on disk, the ILSVRC / VOC / COCO protocols, both results formats, tables,
a JSON report and precision/recall plots.

What is written, under ``<work_dir>/<name>/eval_<split>/`` (or ``--out``), per result set
(``model_<k>``, ``ensemble<N>_<method>``, or a ``--detections`` file's stem):
``<set>/detections.npz`` (the cache, with the key it was made under), ``<set>/ilsvrc.txt``
(submission lines), ``<set>/coco.json``, ``<set>/pr.png``; and ``report.json`` for the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from backbone.checkpoint import CheckpointError, write_atomic, write_json_atomic
from backbone.data import DataError
from backbone.runtime import amp_for, init_distributed

from .data.build import build_detection_data
from .data.dataset import collate, with_epoch_report
from .engine import predict, to_original
from .ensemble import check_compatible, detect_shared, fuse_detections
from .evaluation import (ImageDetections, evaluate_coco, evaluate_ilsvrc, evaluate_voc, read_coco_results,
                         read_ilsvrc_results, write_coco_results, write_ilsvrc_results)
from .train import DetConfig, load_final

METRICS = ("ilsvrc", "voc07", "voc", "coco")
# part of the cache key: bump when inference or the ensemble methods change what they produce
DETECTIONS_VERSION = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class GroundTruth:
    """The split being scored: dataset (for inference), records (for scoring), ids for the files."""

    dataset: object
    records: list
    classes: list[str]
    class_names: list[str]
    result_ids: list[int]  # label k -> DET ID (ILSVRC) / category id (COCO) / k (VOC) in results files
    coco_gt: object | None
    description: str


def ground_truth(cfg: DetConfig) -> GroundTruth:
    ds, index = build_detection_data(cfg.data, train=False, seed=cfg.seed)
    if not index.records:
        raise DataError(f"{cfg.data.root}: split {cfg.data.val_split} has no images to score")
    for pos, r in enumerate(index.records):  # ILSVRC lines need an image index; VOC/COCO: the position
        if r.index < 0:
            r.index = pos + 1
    ids = getattr(index, "det_ids", None) or getattr(index, "category_ids", None) or list(range(1, len(index.classes) + 1))
    return GroundTruth(ds, index.records, list(index.classes), list(index.class_names), list(ids),
                       getattr(index, "coco", None), f"{cfg.data.format} {cfg.data.root} [{cfg.data.val_split}]")


def _final(base: str, k: int) -> str:
    """Member ``k``'s ``model_final.pth`` under ``<work_dir>/<name>`` (``DetConfig.out_dir``'s layout)."""
    return os.path.join(base, f"model_{k}", "model_final.pth")


def member_checkpoints(cfg: DetConfig, n: int) -> list[str]:
    """``model_final.pth`` of members 0..n-1 in the config's work dir; all must exist."""
    base = os.path.join(cfg.work_dir, cfg.name)
    paths = [_final(base, k) for k in range(n)]
    missing = [k for k, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        raise CheckpointError(
            f"{base}: the ensemble needs {n} trained members, missing model_{{{','.join(map(str, missing))}}}/"
            f"model_final.pth; train each with: python tools/train_det.py CONFIG model_index=K")
    return paths


def found_members(cfg: DetConfig) -> list[str]:
    """Every trained member in the config's work dir, in index order."""
    base = os.path.join(cfg.work_dir, cfg.name)
    ks = sorted(int(d[6:]) for d in (os.listdir(base) if os.path.isdir(base) else [])
                if d.startswith("model_") and d[6:].isdigit() and os.path.isfile(_final(base, int(d[6:]))))
    if not ks:
        raise CheckpointError(f"{base}: no trained model (model_K/model_final.pth); train one with: "
                              "python tools/train_det.py CONFIG, or name checkpoints with --checkpoints")
    return [_final(base, k) for k in ks]


# ---- the detection cache ----------------------------------------------------------------------

def cache_key(cfg: DetConfig, checkpoints: list[str], method: str | None, batch_size: int) -> str:
    """What a set of detections depends on: the checkpoints (path, size, mtime), the data, the scale
    and the batch size (a batch pads its images to the largest, which moves detections a little)."""
    parts = [(os.path.abspath(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in checkpoints]
    d = cfg.data
    blob = json.dumps([DETECTIONS_VERSION, parts, method, d.format, os.path.abspath(d.root), d.val_split,
                       d.test_scale, d.max_size, batch_size])
    return hashlib.sha1(blob.encode()).hexdigest()


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
        return [ImageDetections(boxes[a:b], scores[a:b], labels[a:b]) for a, b in zip(starts, ends)], float(z["seconds"])
    except Exception:  # a damaged cache is recomputed, never trusted
        return None


# ---- inference ----------------------------------------------------------------------------------

def _loader(gt: GroundTruth, batch_size: int, workers: int, rank: int, world: int) -> DataLoader:
    """This process's share of the images (every world-th one), unshuffled."""
    ds = gt.dataset if world == 1 else Subset(gt.dataset, range(rank, len(gt.records), world))
    return DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)


def _gather(dets: list[ImageDetections], world: int) -> list[ImageDetections]:
    """Every process filled its own images' slots: merge them (rank 0 gets them all)."""
    if world == 1:
        return dets
    parts: list = [None] * world
    dist.all_gather_object(parts, dets)
    return [parts[i % world][i] for i in range(len(dets))]


@torch.inference_mode()
def predict_ensemble(models: list, loader, device: torch.device, n_images: int, autocast,
                     with_members: bool, progress: bool) -> tuple[list[ImageDetections], list[list[ImageDetections]]]:
    """The ``shared`` ensemble over a loader; with ``with_members`` also each member's own
    detections from the same pass."""
    ens = [ImageDetections.empty() for _ in range(n_images)]
    members = [[ImageDetections.empty() for _ in range(n_images)] for _ in models] if with_members else []
    for batch in tqdm(loader, desc=f"ensemble of {len(models)}", disable=not progress, dynamic_ncols=True, leave=False):
        if not batch.images:
            continue
        with autocast():
            out, own = detect_shared(models, [im.to(device) for im in batch.images], with_members)
        for j, t in enumerate(batch.targets):
            ens[t["position"]] = to_original(t, out[j])
            for k in range(len(own)):
                members[k][t["position"]] = to_original(t, own[k][j])
    return ens, members


# ---- scoring and reporting ----------------------------------------------------------------------

def score(gt: GroundTruth, dets: list[ImageDetections], metric: str) -> dict:
    """``{"map", "ap" [C], "npos" [C], "curves"}``; COCO adds its twelve statistics."""
    n = len(gt.classes)
    if metric == "ilsvrc":
        return evaluate_ilsvrc(gt.records, dets, n)
    if metric in ("voc07", "voc"):
        return evaluate_voc(gt.records, dets, n, use_07_metric=metric == "voc07")
    stats = evaluate_coco(gt.records, dets, gt.result_ids, gt.class_names, coco_gt=gt.coco_gt)
    return {"map": stats["AP"], "stats": stats}


def write_results(folder: str, gt: GroundTruth, dets: list[ImageDetections]) -> None:
    write_ilsvrc_results(os.path.join(folder, "ilsvrc.txt"), gt.records, dets, gt.result_ids)
    write_coco_results(os.path.join(folder, "coco.json"), gt.records, dets, gt.result_ids)


def read_results(path: str, gt: GroundTruth) -> list[ImageDetections]:
    """A saved results file: COCO JSON (``.json``) or ILSVRC submission lines (anything else)."""
    if path.endswith(".json"):
        return read_coco_results(path, gt.records, gt.result_ids)
    return read_ilsvrc_results(path, gt.records, gt.result_ids)


def plot_pr(path: str, title: str, result: dict, names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    aps = result["ap"]
    for c, curve in enumerate(result.get("curves", [])):
        if curve is None or aps[c] != aps[c]:
            continue
        precision, recall = curve
        ax.plot(recall, precision, lw=0.8, alpha=0.6, label=f"{names[c]} {100 * aps[c]:.1f}" if len(names) <= 20 else None)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"{title}: mAP {100 * result['map']:.2f}")
    if len(names) <= 20:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def draw(folder: str, gt: GroundTruth, dets: list[ImageDetections], n: int, min_score: float) -> str:
    """The first ``n`` images of the split with their detections (score >= ``min_score``) as PNG."""
    import cv2

    from backbone.data import BadImageError, read_image

    from .visualize import draw_boxes

    os.makedirs(folder, exist_ok=True)
    for r, d in list(zip(gt.records, dets))[:n]:
        try:
            img = read_image(r.path)
        except BadImageError:
            continue
        keep = d.scores >= min_score
        stem = os.path.splitext(os.path.basename(r.path))[0]
        tmp = os.path.join(folder, f"{stem}.tmp.png")
        cv2.imwrite(tmp, draw_boxes(img, d.boxes[keep], d.labels[keep], gt.class_names, scores=d.scores[keep]))
        os.replace(tmp, os.path.join(folder, f"{stem}.png"))
    return folder


def class_table(gt: GroundTruth, results: dict[str, dict], metric: str) -> str:
    """name, number of ground-truth objects, AP (%) per result set; the mean last."""
    sets = list(results)
    npos = next(iter(results.values()))[metric]["npos"]
    width = max(12, *(len(n) for n in gt.class_names))
    head = f"{'class':<{width}} {'objects':>8} " + " ".join(f"{s:>14}" for s in sets)
    lines = [f"per-class AP (%), {metric}", head, "-" * len(head)]
    for c, name in enumerate(gt.class_names):
        aps = [results[s][metric]["ap"][c] for s in sets]
        lines.append(f"{name:<{width}} {int(npos[c]):>8} " + " ".join(
            f"{'-':>14}" if a != a else f"{100 * a:>14.2f}" for a in aps))
    lines.append("-" * len(head))
    lines.append(f"{'mean':<{width}} {int(np.sum(npos)):>8} " + " ".join(f"{100 * results[s][metric]['map']:>14.2f}"
                                                                          for s in sets))
    return "\n".join(lines)


def paper_table(results: dict[str, dict], metrics: list[str], seconds: dict[str, float]) -> str:
    """Like the paper's Table 5: one row per model and one for the ensemble, mAP (%) per protocol."""
    cols = [m if m != "coco" else "coco AP" for m in metrics]
    head = f"{'model':<22} " + " ".join(f"{c:>10}" for c in cols) + f" {'infer s':>9}"
    lines = [head, "-" * len(head)]
    singles = [s for s in results if not s.startswith("ensemble")]
    for s in results:
        t = seconds.get(s, float("nan"))
        lines.append(f"{s:<22} " + " ".join(f"{100 * results[s][m]['map']:>10.2f}" for m in metrics)
                     + (f" {t:>9.1f}" if t == t else f" {'in ens.':>9}"))
    if len(singles) > 1:
        lines.append(f"{'mean of single models':<22} " + " ".join(
            f"{100 * np.mean([results[s][m]['map'] for s in singles]):>10.2f}" for m in metrics))
    return "\n".join(lines)


def _jsonable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k != "curves"}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            out[k] = [None if (isinstance(x, float) and x != x) else x for x in v.tolist()]
        elif isinstance(v, float) and v != v:
            out[k] = None
    return out


@dataclass
class EvalRequest:
    checkpoints: list[str] | None = None  # None: the config's work dir
    ensemble: int = 0  # N: members 0..N-1 and their ensemble
    method: str = "shared"
    metrics: tuple[str, ...] = ("ilsvrc",)
    detections: str | None = None  # score this results file; no model
    out: str | None = None
    batch_size: int = 1  # as training's evaluation; larger batches pad images to the largest (scores move)
    cache: bool = True
    fuse_iou: float = 0.55  # wbf/nms: boxes of one class overlapping this much are one object
    draw: int = 0  # draw the last result set's detections on this many images of the split
    draw_score: float = 0.3
    progress: bool = True


def run(cfg: DetConfig, req: EvalRequest) -> dict:
    """Score, print the tables, write the report; returns the report (rank 0; others return {})."""
    device, rank, world = init_distributed(cfg.device)
    gt = ground_truth(cfg)
    out = req.out or os.path.join(cfg.work_dir, cfg.name, f"eval_{cfg.data.val_split}")
    if rank == 0:
        os.makedirs(out, exist_ok=True)
    dets: dict[str, list[ImageDetections]] = {}
    seconds: dict[str, float] = {}
    sources: dict[str, str] = {}
    if req.detections:
        name = os.path.splitext(os.path.basename(req.detections))[0]
        dets[name], sources[name] = read_results(req.detections, gt), req.detections
    else:
        paths = (req.checkpoints or (member_checkpoints(cfg, req.ensemble) if req.ensemble else found_members(cfg)))
        if req.ensemble and req.checkpoints and len(req.checkpoints) != req.ensemble:
            raise CheckpointError(f"--ensemble {req.ensemble} with {len(req.checkpoints)} --checkpoints: give as many")
        for p in paths:
            if not os.path.isfile(p):
                raise CheckpointError(f"{p}: no such checkpoint (model_final.pth from tools/train_det.py)")
        names = [os.path.basename(os.path.dirname(p)) if os.path.basename(p) == "model_final.pth"
                 else os.path.splitext(os.path.basename(p))[0] for p in paths]
        if len(set(names)) != len(names):
            names = [f"model_{k}" for k in range(len(paths))]
        _infer(cfg, req, gt, paths, names, out, device, rank, world, dets, seconds)
        sources = dict(zip(names, paths))
    if rank != 0:
        return {}
    results = {s: {m: score(gt, d, m) for m in req.metrics} for s, d in dets.items()}
    report = {"data": gt.description, "images": len(gt.records), "metrics": list(req.metrics),
              "method": req.method if req.ensemble else None, "out": out,
              "results": {s: {"source": sources.get(s, "ensemble"),
                              "inference_seconds": seconds[s] if seconds.get(s, float("nan")) == seconds.get(s) else None,
                              **{m: _jsonable(r) for m, r in res.items()}} for s, res in results.items()}}
    for s, res in results.items():
        folder = os.path.join(out, s)
        os.makedirs(folder, exist_ok=True)
        if not req.detections:
            write_results(folder, gt, dets[s])
        curves = next((res[m] for m in req.metrics if m != "coco"), None)
        if curves is not None:
            plot_pr(os.path.join(folder, "pr.png"), s, curves, gt.class_names)
    if req.draw:
        last = list(dets)[-1]
        report["drawn"] = draw(os.path.join(out, last, "drawn"), gt, dets[last], req.draw, req.draw_score)
    write_json_atomic(os.path.join(out, "report.json"), report)
    primary = next((m for m in req.metrics if m != "coco"), None)  # pycocotools gives no per-class table here
    if primary:
        print(class_table(gt, results, primary))
        print()
    print(f"mAP (%) on {gt.description}, {len(gt.records)} images")
    print(paper_table(results, list(req.metrics), seconds))
    if "coco" in req.metrics:
        for s, res in results.items():
            # pycocotools reports -1 for an area range without objects
            print(f"{s} COCO: " + ", ".join(f"{k} {100 * v:.1f}" if v >= 0 else f"{k} n/a"
                                            for k, v in res["coco"]["stats"].items()))
    print(f"\nreport, results files and precision/recall plots: {out}"
          + (f"\ndetections drawn ({list(dets)[-1]}, score >= {req.draw_score}): {report['drawn']}" if req.draw else ""))
    return report


def _infer(cfg: DetConfig, req: EvalRequest, gt: GroundTruth, paths: list[str], names: list[str], out: str,
           device, rank: int, world: int, dets: dict, seconds: dict) -> None:
    """Fill ``dets``/``seconds`` for every member and the ensemble, from the cache where it is valid."""
    n = len(gt.records)
    autocast, _ = amp_for(device, cfg.amp)
    keys = {s: cache_key(cfg, [p], None, req.batch_size) for s, p in zip(names, paths)}
    ens_name = f"ensemble{len(paths)}_{req.method}" if req.ensemble else None
    if ens_name:
        keys[ens_name] = cache_key(cfg, paths, req.method, req.batch_size)
    for s, key in keys.items():
        cached = load_detections(os.path.join(out, s, "detections.npz"), key, n) if req.cache else None
        if cached is not None:
            dets[s], seconds[s] = cached
            log(f"eval_map: {s}: cached detections ({os.path.join(out, s, 'detections.npz')})")
    todo = [k for k, s in enumerate(names) if s not in dets]
    shared = ens_name is not None and req.method == "shared" and ens_name not in dets
    loader = _loader(gt, req.batch_size, cfg.data.workers, rank, world)
    progress = req.progress and rank == 0
    if shared:  # one pass: the ensemble and, from the same trunk features, the members not cached
        models = [load_final(p)[0].to(device) for p in paths]
        check_compatible(models)
        tic = time.perf_counter()
        ens, own = predict_ensemble(models, with_epoch_report(loader, "evaluation"), device, n, autocast,
                                    with_members=bool(todo), progress=progress)
        dets[ens_name], seconds[ens_name] = _gather(ens, world), time.perf_counter() - tic
        for k in todo:  # their time is inside the ensemble's
            dets[names[k]], seconds[names[k]] = _gather(own[k], world), float("nan")
        todo = []
    for k in todo:
        model = load_final(paths[k])[0].to(device)
        tic = time.perf_counter()
        d = predict(model, with_epoch_report(loader, "evaluation"), device, n, autocast, progress)
        dets[names[k]], seconds[names[k]] = _gather(d, world), time.perf_counter() - tic
    if ens_name and ens_name not in dets:  # nms / wbf over the members' detections
        tic = time.perf_counter()
        dets[ens_name] = [fuse_detections([dets[s][i] for s in names], req.method, req.fuse_iou,
                                          (r.height, r.width), cfg.model.box_detections_per_img)
                          for i, r in enumerate(gt.records)]
        seconds[ens_name] = time.perf_counter() - tic
    if rank == 0:
        for s, key in keys.items():
            folder = os.path.join(out, s)
            os.makedirs(folder, exist_ok=True)
            save_detections(os.path.join(folder, "detections.npz"), dets[s], key, seconds[s])
    ordered = {s: dets[s] for s in names + ([ens_name] if ens_name else [])}  # members first, the ensemble last
    dets.clear()
    dets.update(ordered)
