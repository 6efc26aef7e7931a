"""mAP of trained detectors and of their ensemble: ILSVRC DET, Pascal VOC (2007 and 2010+), COCO.

    python tools/eval_map.py [CONFIG] [key=value ...]              # every trained member, one by one
    python tools/eval_map.py CONFIG --ensemble 6 [--method shared|nms|wbf]
    python tools/eval_map.py CONFIG --checkpoints a.pth b.pth --metric all
    python tools/eval_map.py CONFIG --detections results.txt       # ILSVRC lines or COCO .json, no model
    python tools/eval_map.py CONFIG --detections results/          # VOC's comp4_det_<split>_<class>.txt files
    torchrun --nproc_per_node N tools/eval_map.py CONFIG --ensemble 6
    python tools/eval_map.py CONFIG --tta                           # each member also with test-time augmentation
    python tools/eval_map.py CONFIG --ensemble 6 --metric all --report   # and report.html, one page
    python tools/eval_map.py CONFIG --metric coco --coco-backend pycocotools   # hotcoco by default

CONFIG (default configs/ilsvrc_det.yaml) names the data (data.root, data.val_split, the test scale)
and the work dir holding the members (work_dirs/<name>/model_<k>/model_final.pth). Detections are
cached per model: scoring again is instant.
"""

from __future__ import annotations

import argparse

from core.cli import config_and_overrides, run_guarded
from core.config import load_config
from detector.config import DetConfig, test_time_overrides
from detector.eval_map import METRICS, EvalRequest, run
from detector.evaluation.coco import COCO_BACKENDS
from detector.inference import METHODS

DEFAULT_CONFIG = "configs/ilsvrc_det.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="*", help="[CONFIG] [key=value ...], e.g. configs/toy_det.yaml data.val_split=val")
    p.add_argument("--checkpoints", nargs="+", help="model_final.pth files (default: the config's work dir)")
    p.add_argument("--ensemble", type=int, default=0, metavar="N", help="score members 0..N-1 and their ensemble")
    p.add_argument("--method", choices=METHODS, default="shared",
                   help="shared: every member's head scores one set of regions (the paper's); nms / wbf: "
                        "combine the members' detections")
    p.add_argument("--metric", choices=(*METRICS, "all"), default="ilsvrc")
    p.add_argument("--detections", metavar="RESULTS",
                   help="score saved results instead of running models: ILSVRC submission lines, COCO .json, or "
                        "VOC per-class files (a folder, a glob, or a *_det_*.txt file)")
    p.add_argument("--out",
                   help="folder for the report, results files and plots (default: work_dirs/<name>/eval_<split>)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images a batch at most; a batch holds images that pad to one shape, so any batch size "
                        "gives batch size 1's detections")
    p.add_argument("--draw", type=int, default=0, metavar="N",
                   help="draw the ensemble's (else the last model's) detections on the first N images")
    p.add_argument("--draw-score", type=float, default=EvalRequest.draw_score, metavar="S",
                   help="draw (and count as boxed) the detections scoring at least S (default %(default)s)")
    p.add_argument("--coco-backend", choices=COCO_BACKENDS, default="auto",
                   help="the library behind --metric coco (same numbers; auto: hotcoco, else pycocotools)")
    p.add_argument("--tta", action="store_true",
                   help="also score each member with test-time augmentation (flips, data.tta_scales): model_<k>_tta")
    p.add_argument("--no-cache", action="store_true", help="run the models even where cached detections are valid")
    p.add_argument("--report", action="store_true",
                   help="also write report.html: the whole evaluation on one self-contained page")
    a = p.parse_intermixed_args(argv)  # options and key=value overrides in any order
    try:
        config, overrides = config_and_overrides(a.args, DEFAULT_CONFIG)
    except ValueError as e:
        p.error(str(e))
    if a.ensemble < 0 or a.ensemble == 1:
        p.error("--ensemble N needs N >= 2 members")
    metrics = METRICS if a.metric == "all" else (a.metric,)

    def body() -> int:
        cfg = load_config(DetConfig, config, overrides)
        run(cfg, EvalRequest(checkpoints=a.checkpoints, ensemble=a.ensemble, method=a.method, metrics=metrics,
                             detections=a.detections, out=a.out, batch_size=a.batch_size, cache=not a.no_cache,
                             draw=a.draw, draw_score=a.draw_score, coco_backend=a.coco_backend, tta=a.tta,
                             report=a.report, progress=cfg.progress,
                             test_time=test_time_overrides(cfg.model, overrides)))
        return 0

    return run_guarded("eval_map", body)


if __name__ == "__main__":
    raise SystemExit(main())
