"""Where the mAP goes, from saved detections (no model run), and training curves from logs.

    python tools/analyze.py errors CONFIG [key=value ...] --detections RESULTS [--protocol voc|voc07|ilsvrc]
                                  [--min-score 0.3] [--images 4] [--out DIR]
    python tools/analyze.py curves LOG.jsonl [LOG.jsonl ...] --out curves.png

errors: RESULTS is what eval_map.py writes per result set (ilsvrc.txt, coco.json or the voc/
folder) or reads with --detections. Prints the TIDE-style breakdown (detector/analysis.py: the mAP
lost to class, location, both, duplicate, background and missed errors, fixed cumulatively, so the
parts add up to 100 - mAP) and writes to DIR (default: RESULTS' folder/analysis): errors.json,
confusion.csv and confusion.png (objects against detections at --min-score, with background and
missed), and best_*.png / worst_*.png, the images with the fewest and most errors, objects left
and detections right.

curves: the loss terms, the learning rate and the evaluations of detector and pretraining runs
(their log.jsonl), one line per run.
"""

from __future__ import annotations

import argparse
import os

from core.atomic import save_figure_atomic, write_json_atomic
from core.cli import config_and_overrides, run_guarded
from core.config import load_config
from core.records import read_records
from detector.analysis import confusion_matrix, error_breakdown, image_errors, save_confusion, save_side_by_side
from detector.config import DetConfig
from detector.eval_map.ground_truth import ground_truth
from detector.eval_map.scoring import read_results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("errors", help="error breakdown, confusion matrix, best and worst images")
    e.add_argument("args", nargs="*", help="CONFIG [key=value ...]")
    e.add_argument("--detections", required=True, metavar="RESULTS")
    e.add_argument("--protocol", choices=("voc", "voc07", "ilsvrc"), default="voc")
    e.add_argument("--min-score", type=float, default=0.3)
    e.add_argument("--images", type=int, default=4, help="best and worst images drawn, each")
    e.add_argument("--out")
    c = sub.add_parser("curves", help="training curves from log.jsonl files")
    c.add_argument("logs", nargs="+")
    c.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return run_guarded("analyze", lambda: errors(a) if a.what == "errors" else curves(a.logs, a.out))


def errors(a: argparse.Namespace) -> int:
    config, overrides = config_and_overrides(a.args, "configs/ilsvrc_det.yaml")
    cfg = load_config(DetConfig, config, overrides)
    gt = ground_truth(cfg, with_dataset=False)
    dets = read_results(a.detections, gt)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.detections.rstrip("/"))), "analysis")
    parts = error_breakdown(gt.records, dets, len(gt.classes), a.protocol)
    print(f"{a.protocol} mAP {parts['map']:.2f}; what each error type costs (points, fixed in this order):")
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in parts.items() if k != "map"))
    save_confusion(out, confusion_matrix(gt.records, dets, len(gt.classes), a.min_score), gt.class_names)
    wrong = image_errors(gt.records, dets, a.min_score)
    order = sorted(range(len(wrong)), key=lambda i: (wrong[i], -len(gt.records[i].labels)))
    for tag, picked in (("best", order[:a.images]), ("worst", order[::-1][:a.images])):
        for rank, i in enumerate(picked):
            stem = os.path.splitext(os.path.basename(gt.records[i].path))[0]
            save_side_by_side(os.path.join(out, f"{tag}_{rank}_{stem}.png"), gt.records[i], dets[i], gt.class_names,
                              a.min_score)
    write_json_atomic(os.path.join(out, "errors.json"), {"protocol": a.protocol, "min_score": a.min_score, **parts})
    print(f"analyze: errors.json, confusion.csv, confusion.png, best/worst images -> {out}")
    return 0


def curves(logs: list[str], out: str) -> int:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4))
    loss, lr, ev = fig.subplots(1, 3)
    for path in logs:
        rows = read_records(path)
        run = os.path.basename(os.path.dirname(os.path.abspath(path)))
        train = [r for r in rows if r.get("kind") == "train"]
        for key in sorted({k for r in train for k in r if k.startswith("loss")}):
            loss.plot([r["global_step"] for r in train if key in r], [r[key] for r in train if key in r],
                      lw=0.8, label=f"{run} {key}")
        lr.plot([r["global_step"] for r in train], [r.get("lr", float("nan")) for r in train], label=run)
        evals = [r for r in rows if r.get("kind") == "eval"]
        for key in sorted({k for r in evals for k in r if k == "map" or k.endswith(("top1", "top5"))}):
            scale = 100 if key == "map" else 1  # the detector logs mAP as a fraction, pretraining top-k in %
            pts = [(r["epoch"], scale * r[key]) for r in evals if isinstance(r.get(key), (int, float))]
            if pts:
                ev.plot(*zip(*pts), marker="o", label=f"{run} {key}")
    loss.set(xlabel="step", title="loss terms", yscale="log")
    lr.set(xlabel="step", title="learning rate")
    ev.set(xlabel="epoch", ylabel="%", title="evaluations (mAP, top-1, top-5)")
    for ax in (loss, lr, ev):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure_atomic(fig, out)
    print(f"analyze: curves of {len(logs)} run(s) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
