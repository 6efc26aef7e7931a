"""What a scoring run shows: the per-class table, the paper-style table (Table 5), precision/recall
plots, detections drawn on images, and the results as plain JSON for the report."""

from __future__ import annotations

import os

import numpy as np

from core.atomic import save_figure_atomic, write_png_atomic
from core.data import read_image
from core.errors import BadImageError

from ..box_ops import iou_xyxy
from ..data.sample import ImageRecord
from ..evaluation import ImageDetections
from ..visualize import draw_boxes, enlarged
from .ground_truth import GroundTruth


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
    singles = [s for s in results if not s.startswith("ensemble") and not s.endswith("_tta")]
    for s in results:
        t = seconds.get(s, float("nan"))
        lines.append(f"{s:<22} " + " ".join(f"{100 * results[s][m]['map']:>10.2f}" for m in metrics)
                     + (f" {t:>9.1f}" if t == t else f" {'in ens.':>9}"))
    if len(singles) > 1:
        lines.append(f"{'mean of single models':<22} " + " ".join(
            f"{100 * np.mean([results[s][m]['map'] for s in singles]):>10.2f}" for m in metrics))
    return "\n".join(lines)


def jsonable(result: dict) -> dict:
    """A protocol's result for the JSON report: arrays as lists, NaN as null, no curves."""
    out = {k: v for k, v in result.items() if k != "curves"}
    for k, v in out.items():
        if isinstance(v, np.ndarray):
            out[k] = [None if (isinstance(x, float) and x != x) else x for x in v.tolist()]
        elif isinstance(v, float) and v != v:
            out[k] = None
    return out


def plot_pr(path: str, title: str, result: dict, names: list[str]) -> None:
    """Each class's precision/recall curve, with its AP in the legend (up to 20 classes; more are
    drawn as one collection, 200 classes in a fraction of the time of a line each)."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure list

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    aps = result["ap"]
    shown = [(c, curve) for c, curve in enumerate(result.get("curves", [])) if curve is not None and aps[c] == aps[c]]
    if len(names) <= 20:
        for c, (precision, recall) in shown:
            ax.plot(recall, precision, lw=0.8, alpha=0.6, label=f"{names[c]} {100 * aps[c]:.1f}")
        ax.legend(fontsize=7, loc="lower left")
    else:
        ax.add_collection(LineCollection([np.column_stack([r, p]) for _, (p, r) in shown], linewidths=0.8,
                                         alpha=0.6, colors=[f"C{c % 10}" for c, _ in shown]))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"{title}: mAP {100 * result['map']:.2f}")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def boxed_objects(records: list[ImageRecord], dets: list[ImageDetections], min_score: float,
                  iou: float = 0.5) -> dict[str, int]:
    """What a person sees in the drawn images: ``{"objects", "boxed", "spurious"}``. An object (not
    ignored, its class not blacklisted in the image) is boxed when a detection of its class with
    score >= ``min_score`` overlaps it by IoU >= ``iou``; each detection boxes one object at most,
    the best-scoring first, as the protocols match. ``spurious``: drawn boxes that box nothing and
    lie on no ignored object."""
    objects = boxed = spurious = 0
    for r, d in zip(records, dets):
        keep = d.scores >= min_score
        boxes, labels = d.boxes[keep], d.labels[keep]  # [K, 4], [K]
        order = np.argsort(-d.scores[keep], kind="stable")
        scored = ~r.ignore & ~np.isin(r.labels, list(r.ignore_classes))  # [N]
        overlap = iou_xyxy(boxes, r.boxes)  # [K, N]
        same = labels[:, None] == r.labels[None, :]  # [K, N]
        taken = np.zeros(len(r.boxes), bool)
        for k in order:
            hits = np.flatnonzero(same[k] & scored & ~taken & (overlap[k] >= iou))
            if len(hits):
                taken[hits[np.argmax(overlap[k, hits])]] = True
            elif not (same[k] & ~scored & (overlap[k] >= iou)).any():
                spurious += 1
        objects += int(scored.sum())
        boxed += int(taken.sum())
    return {"objects": objects, "boxed": boxed, "spurious": spurious}


def draw(folder: str, gt: GroundTruth, dets: list[ImageDetections], n: int, min_score: float) -> str:
    """The first ``n`` images of the split with their detections (score >= ``min_score``) as PNG."""
    os.makedirs(folder, exist_ok=True)
    for r, d in list(zip(gt.records, dets))[:n]:
        try:
            img = read_image(r.path)
        except BadImageError:
            continue
        keep = d.scores >= min_score
        img, f = enlarged(img)
        stem = os.path.splitext(os.path.basename(r.path))[0]
        write_png_atomic(os.path.join(folder, f"{stem}.png"),
                         draw_boxes(img, d.boxes[keep] * f, d.labels[keep], gt.class_names, scores=d.scores[keep]))
    return folder


def print_tables(gt: GroundTruth, results: dict[str, dict], metrics: list[str], seconds: dict[str, float]) -> None:
    """The per-class table of the first protocol that has one, the paper-style table, and COCO's
    twelve numbers per result set."""
    primary = next((m for m in metrics if m != "coco"), None)  # pycocotools gives no per-class table here
    if primary:
        print(class_table(gt, results, primary))
        print()
    print(f"mAP (%) on {gt.description}, {len(gt.records)} images")
    print(paper_table(results, metrics, seconds))
    if "coco" in metrics:
        for s, res in results.items():
            # pycocotools reports -1 for an area range without objects
            print(f"{s} COCO: " + ", ".join(f"{k} {100 * v:.1f}" if v >= 0 else f"{k} n/a"
                                            for k, v in res["coco"]["stats"].items()))
