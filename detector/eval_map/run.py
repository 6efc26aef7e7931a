"""``run(cfg, request)``: which result sets to score, their detections, the scores, the report and
the tables (``tools/eval_map.py`` parses the command line and calls it).

Scoring a results file (``--detections``) runs no model, so it loads neither torch nor the
models: the modules that do (``detections``, ``final``, ``core.runtime``) are imported where the
models are run (through :mod:`detector.inference`)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from core.atomic import write_json_atomic
from core.data_report import publish, report_path
from core.records import log

from ..config import DetConfig
from ..evaluation import ImageDetections
from .ground_truth import GroundTruth, ground_truth
from .report import boxed_objects, draw, jsonable, plot_pr, print_tables
from .scoring import read_results, results_name, score, write_results


@dataclass
class EvalRequest:
    checkpoints: list[str] | None = None  # None: the config's work dir
    ensemble: int = 0  # N: members 0..N-1 and their ensemble
    method: str = "shared"
    metrics: tuple[str, ...] = ("ilsvrc",)
    detections: str | None = None  # score this results file; no model
    out: str | None = None
    batch_size: int = 8  # at most; images of one padded shape per batch (shape_batches), so the scores are batch 1's
    cache: bool = True
    fuse_iou: float = 0.55  # wbf/nms: boxes of one class overlapping this much are one object
    draw: int = 0  # draw the last result set's detections on this many images of the split
    draw_score: float = 0.3
    coco_backend: str = "auto"  # the library behind the COCO metrics (detector.evaluation.coco)
    tta: bool = False  # each member also over the test-time views (result sets model_<k>_tta)
    report: bool = False  # also report.html (html.py) and the pictures under ultralytics' names
    progress: bool = True
    # model keys named on the command line that act at test time (detector.config.TEST_TIME_KEYS):
    # they replace the members' own
    test_time: dict = dataclasses.field(default_factory=dict)


def members(cfg: DetConfig, req: EvalRequest) -> tuple[list[str], list[str]]:
    """``(checkpoint paths, result-set names)`` of the models to score."""
    from core.checkpoint import CheckpointError

    from ..final import FINAL_NAME, found_members, member_checkpoints

    if req.ensemble and req.checkpoints and len(req.checkpoints) != req.ensemble:
        raise CheckpointError(f"--ensemble {req.ensemble} with {len(req.checkpoints)} --checkpoints: give as many")
    paths = req.checkpoints or (member_checkpoints(cfg.work_dir, cfg.name, req.ensemble) if req.ensemble
                                else found_members(cfg.work_dir, cfg.name))
    for p in paths:
        if not os.path.isfile(p):
            raise CheckpointError(f"{p}: no such checkpoint ({FINAL_NAME} from tools/train_det.py)")
    names = [os.path.basename(os.path.dirname(p)) if os.path.basename(p) == FINAL_NAME
             else os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(names)) != len(names):
        names = [f"model_{k}" for k in range(len(paths))]
    return paths, names


def run(cfg: DetConfig, req: EvalRequest) -> dict:
    """Score, print the tables, write the report; returns the report (rank 0; others return {})."""
    if req.detections:  # no model: no device, and under torchrun the first process does it all
        device, rank, world = None, int(os.environ.get("RANK", "0")), 1
    else:
        from core.runtime import start

        device, rank, world = start(cfg.device)
    # members that score external proposals read them with the images (the config says which)
    gt = ground_truth(cfg, with_proposals=cfg.model.proposals != "rpn" and not req.detections,
                      with_dataset=not req.detections)
    out = req.out or os.path.join(cfg.work_dir, cfg.name, f"eval_{cfg.data.val_split}")
    if rank == 0:
        publish(gt.report, "reading the annotations", report_path(out, "read_val"), log)
    if req.detections:
        name = results_name(req.detections)
        dets, seconds, sources = {name: read_results(req.detections, gt)}, {}, {name: req.detections}
    else:
        from .detections import Plan, detections

        paths, names = members(cfg, req)
        plan = Plan(paths, names, f"ensemble{len(paths)}_{req.method}" if req.ensemble else None)
        dets, seconds = detections(cfg, req, plan, gt, out, device, rank, world)
        sources = dict(zip(names, paths))
    if rank != 0:
        return {}
    results = {s: {m: score(gt, d, m, req.coco_backend) for m in req.metrics} for s, d in dets.items()}
    report = write_outputs(out, gt, req, dets, results, seconds, sources)
    print_tables(gt, results, list(req.metrics), seconds)
    print(f"\nreport, results files and precision/recall plots: {out}")
    if req.report:
        import yaml

        from core.config import to_dict

        from .html import write_html_report

        config = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        page = write_html_report(out, gt, dets, results, list(req.metrics), config, req.draw_score)
        print(f"the whole evaluation on one page: {page}")
    if req.draw:
        b = report["drawn_objects"]
        print(f"detections drawn ({b['result_set']}, score >= {req.draw_score}): {report['drawn']}\n"
              f"  in them {b['boxed']} of {b['objects']} objects boxed with their class (IoU >= 0.5; "
              f"{100 * b['boxed'] / max(b['objects'], 1):.0f}%), {b['spurious']} boxes on nothing")
    return report


def write_outputs(out: str, gt: GroundTruth, req: EvalRequest, dets: dict[str, list[ImageDetections]],
                  results: dict[str, dict], seconds: dict[str, float], sources: dict[str, str]) -> dict:
    """Per result set its results files (unless it came from one) and ``pr.png``; the drawn
    detections of the last set; ``report.json``. Returns the report."""
    report = {"data": gt.description, "images": len(gt.records), "metrics": list(req.metrics),
              "method": req.method if req.ensemble else None, "out": out,
              "results": {s: {"source": sources.get(s, "ensemble"),
                              # NaN (scored inside the ensemble's pass) and absent (a results file): null
                              "inference_seconds": seconds[s] if seconds.get(s, float("nan")) == seconds.get(s)
                              else None,
                              **{m: jsonable(r) for m, r in res.items()}} for s, res in results.items()}}
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
        report["drawn_objects"] = {"result_set": last, "min_score": req.draw_score,
                                   **boxed_objects(gt.records[:req.draw], dets[last][:req.draw], req.draw_score)}
    write_json_atomic(os.path.join(out, "report.json"), report)
    return report
