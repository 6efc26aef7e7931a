"""``eval_map.py --report``: ``report.html``, the whole evaluation on one self-contained page (every
picture embedded, so it opens from disk with no server): the summary table per protocol, per-class
AP for members and ensemble, precision-recall curves, the confusion matrix, the error breakdown,
the best and worst images, and the run's configuration. The pictures are also written beside it
under the names ultralytics users know (``PR_curve.png``, ``confusion_matrix.png``,
``AP_per_class.png``, ``val_batch0_pred.png``: the split's first image)."""

from __future__ import annotations

import base64
import html
import os
import shutil

import numpy as np

from core.atomic import save_figure_atomic, write_text_atomic

from ..analysis import confusion_matrix, error_breakdown, image_errors, save_confusion, save_side_by_side
from ..evaluation import ImageDetections
from .ground_truth import GroundTruth

# per-class AP and curves; COCO's AP has neither here (run.write_outputs draws pr.png for the first of these)
CURVE_METRICS = ("ilsvrc", "voc07", "voc")
STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
nav a{margin-right:1em}.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}"""


def _png(path: str) -> str:
    with open(path, "rb") as f:
        return "data:image/png;base64," + base64.b64encode(f.read()).decode()


def _img(path: str, alt: str) -> str:
    text = html.escape(alt)
    return f'<figure><img src="{_png(path)}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _summary(results: dict[str, dict], metrics: list[str]) -> str:
    head = "".join(f"<th>{html.escape(m)} mAP</th>" for m in metrics)
    rows = "".join(f"<tr><td>{html.escape(s)}</td>" + "".join(
        f"<td>{100 * res[m]['map']:.2f}</td>" for m in metrics) + "</tr>" for s, res in results.items())
    return f'<table id="summary-table"><tr><th>result set</th>{head}</tr>{rows}</table>'


def plot_ap_per_class(path: str, results: dict[str, dict], metric: str, names: list[str]) -> None:
    """Grouped bars: each class's AP (``metric``) for each result set."""
    from matplotlib.figure import Figure

    sets = list(results)
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) * max(1, len(sets)) ** 0.5 + 2), 4))
    ax = fig.subplots()
    width = 0.8 / len(sets)
    x = np.arange(len(names))
    for k, s in enumerate(sets):
        ax.bar(x + k * width - 0.4 + width / 2, [100 * (a if a == a else 0) for a in results[s][metric]["ap"]],
               width, label=s)
    ax.set_xticks(x, names, rotation=90 if len(names) > 8 else 0, fontsize=7 if len(names) > 20 else 9)
    ax.set(ylabel=f"{metric} AP", ylim=(0, 100), title=f"AP per class ({metric})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)


def _errors(folder: str, gt: GroundTruth, d: list[ImageDetections], metric: str, min_score: float,
            images: int) -> tuple[str, list[str]]:
    """The error breakdown's table, and the best and worst images drawn (paths)."""
    parts = error_breakdown(gt.records, d, len(gt.classes), metric)
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.2f}</td></tr>" for k, v in parts.items())
    wrong = image_errors(gt.records, d, min_score)
    order = sorted(range(len(wrong)), key=lambda i: (wrong[i], -len(gt.records[i].labels)))
    drawn = []
    for tag, picked in (("best", order[:images]), ("worst", order[::-1][:images])):
        for rank, i in enumerate(picked):
            path = os.path.join(folder, f"{tag}_{rank}.png")
            if save_side_by_side(path, gt.records[i], d[i], gt.class_names, min_score):
                drawn.append(path)
    return f'<table id="errors-table"><tr><th>part</th><th>mAP points</th></tr>{cells}</table>', drawn


def write_html_report(out: str, gt: GroundTruth, dets: dict[str, list[ImageDetections]], results: dict[str, dict],
                      metrics: list[str], config: str, min_score: float = 0.3, images: int = 3) -> str:
    """``out/report.html`` and the named pictures beside it; returns the page's path. The confusion
    matrix, errors and images are the last result set's (the ensemble's, where there is one)."""
    folder = os.path.join(out, "report_files")
    os.makedirs(folder, exist_ok=True)
    last = list(dets)[-1]
    curve = next((m for m in metrics if m in CURVE_METRICS), None)
    sections = [("summary", "Summary", f"<p>{len(gt.records)} images of {html.escape(gt.description)}; "
                 f"mAP in points for each result set and protocol.</p>" + _summary(results, metrics))]
    if curve:
        plot_ap_per_class(os.path.join(out, "AP_per_class.png"), results, curve, gt.class_names)
        # each set's curves as run.write_outputs drew them (<out>/<set>/pr.png, the same metric)
        shutil.copyfile(os.path.join(out, last, "pr.png"), os.path.join(out, "PR_curve.png"))
        curves = [_img(os.path.join(out, s, "pr.png"), f"{s}: precision / recall ({curve})") for s in results]
        bars = _img(os.path.join(out, "AP_per_class.png"), f"AP per class, {curve}")
        sections += [("per-class", "AP per class", bars),
                     ("pr-curves", "Precision-recall curves", '<div class="grid">' + "".join(curves) + "</div>")]
    save_confusion(folder, confusion_matrix(gt.records, dets[last], len(gt.classes), min_score), gt.class_names)
    shutil.copyfile(os.path.join(folder, "confusion.png"), os.path.join(out, "confusion_matrix.png"))
    sections.append(("confusion", f"Confusion matrix ({last}, score >= {min_score})",
                     _img(os.path.join(out, "confusion_matrix.png"), "objects (rows) against detections (columns)")))
    table, drawn = _errors(folder, gt, dets[last], curve or "voc", min_score, images)
    sections.append(("errors", f"Where the mAP goes ({last}, {curve or 'voc'})",
                     "<p>Each error type's cost, fixed in this order (the parts add up to 100 - mAP).</p>" + table))
    save_side_by_side(os.path.join(out, "val_batch0_pred.png"), gt.records[0], dets[last][0], gt.class_names,
                      min_score)  # the split's first image, as ultralytics' first validation batch
    sections.append(("images", f"Best and worst images ({last}; objects left, detections right)",
                     '<div class="grid">' + "".join(_img(p, os.path.basename(p)[:-4]) for p in drawn) + "</div>"))
    sections.append(("config", "Configuration", f"<pre>{html.escape(config)}</pre>"))
    nav = "".join(f'<a href="#{sid}">{html.escape(title.split(" (")[0])}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{content}</section>'
                   for sid, title, content in sections)
    title = f"Evaluation: {html.escape(gt.description)}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
            f"<body><h1>Evaluation report</h1><nav>{nav}</nav>{body}</body></html>")
    path = os.path.join(out, "report.html")
    write_text_atomic(path, page)
    return path
