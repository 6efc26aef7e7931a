"""``learning``: how well each head learns real photos from scratch, over several seeds.

Four tiny-COCO training photos (``../shared/data/tiny_coco``: 2-4 objects each, every object at
least 24 px across at 160 px) are learned from scratch by each head through the detector's own
``train_one_epoch`` (batch 4, AdamW as configured, gradients clipped at 5), then detected by
``predict`` and scored (VOC mAP@0.5 on the same photos: does the head learn, not does it
generalise). The seeds' spread is what ``tests/test_real_photos.py`` sets its short version's
marks from; this runs the long version, where one seed says that a head learns, several how well.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from detector.config import DetOptimConfig, build_optimizer
from detector.data.build import DetDataConfig, build_detection_data
from detector.data.dataset import collate
from detector.engine import lr_at, train_one_epoch
from detector.evaluation import evaluate_voc
from detector.inference.predict import Predictor, predict
from detector.model import googlenet_faster_rcnn

from .common import add_command

TINY_COCO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))), "shared", "data", "tiny_coco")
SCALE = 160  # shorter side: 640x480 photos at a quarter of their size
# per head: learning rate, regions sampled per image (C4 runs inception 5a/5b on each)
HEADS = {"fpn": (1e-3, 32), "c4": (2e-3, 16)}


def four_photos(root: str = TINY_COCO):
    """The first four training photos with 2-4 objects, none a crowd, every object at least 24 px
    across at :data:`SCALE` (smaller ones are a few feature-map cells: a test of anchors, not of
    learning): ``(batch, records)``."""
    cfg = DetDataConfig(format="coco", root=root, train_split="train2017", val_split="train2017", scales=[SCALE],
                        test_scale=SCALE, max_size=2 * SCALE, flip=0.0, photometric=0.0, workers=0)
    ds, index = build_detection_data(cfg, train=False)

    def fits(r) -> bool:
        short = (np.minimum(r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1])
                 * SCALE / min(r.width, r.height))  # [N]
        return 2 <= len(r.boxes) <= 4 and not r.ignore.any() and bool((short >= 24).all())

    ds.records = index.records = [r for r in index.records if fits(r)][:4]
    return collate([ds[i] for i in range(len(ds.records))]), index.records


def learn(head: str, steps: int, seed: int, batch=None, records=None) -> dict:
    """One head from scratch on the four photos: ``{"first", "last"}`` (the mean loss of the first
    and last tenth of the steps), ``"map"`` (VOC mAP@0.5 on the photos) and ``"seconds"``."""
    if batch is None:
        batch, records = four_photos()
    lr, regions = HEADS[head]
    torch.manual_seed(seed)
    model = googlenet_faster_rcnn(80, head=head, trainable_from=None, rpn_post_nms_top_n_train=64,
                                  box_batch_size_per_image=regions, rpn_post_nms_top_n_test=50, box_score_thresh=0.0)
    optimizer = build_optimizer(model, DetOptimConfig(name="adamw", weight_decay=1e-4), lr)
    losses: list[float] = []
    tic = time.perf_counter()
    # clipped: from scratch, real photos' first steps blow up without it (SGD at 0.02: NaN at step 41)
    train_one_epoch(model, [batch] * steps, optimizer, lambda g: lr_at(g, steps, lr, [], 0.1, steps // 5, 0.05),
                    epoch=0, epochs=1, steps_per_epoch=steps, start_step=0, device=torch.device("cpu"), seed=seed,
                    grad_clip=5.0, progress=False, on_step=lambda s, st: losses.append(st["loss"]))
    dets, _ = predict(Predictor([model]), [batch], torch.device("cpu"), len(records))
    tenth = max(1, steps // 10)
    return {"first": float(np.mean(losses[:tenth])), "last": float(np.mean(losses[-tenth:])),
            "map": float(evaluate_voc(records, dets, 80)["map"]), "seconds": time.perf_counter() - tic}


def add_parser(sub) -> None:
    c = add_command(sub, "learning", "each head learning four real photos from scratch, over several seeds", 4, SCALE,
                    1, 0, "cpu")
    c.add_argument("--heads", nargs="+", choices=tuple(HEADS), default=list(HEADS))
    c.add_argument("--steps", type=int, nargs="+", default=[40, 100])
    c.add_argument("--seeds", type=int, default=5)
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Each head at each step count over ``--seeds`` seeds: loss first -> last tenth, mAP, seconds."""
    if not os.path.isdir(TINY_COCO):
        print(f"benchmark learning: needs the tiny COCO photos at {TINY_COCO}")
        return 2
    batch, records = four_photos()
    print(f"four tiny-COCO photos ({sum(len(r.boxes) for r in records)} objects) at {SCALE} px, from scratch, batch 4, "
          f"AdamW (fused), {args.seeds} seeds; VOC mAP@0.5 on the photos")
    print(f"{'head':>4} {'steps':>5} | {'mAP per seed':<36} | {'min':>5} {'median':>6} | {'loss last/first':>15} "
          f"| {'s/run':>5}")
    for head in args.heads:
        for steps in args.steps:
            runs = [learn(head, steps, seed, batch, records) for seed in range(args.seeds)]
            maps = [r["map"] for r in runs]
            ratio = max(r["last"] / r["first"] for r in runs)
            print(f"{head:>4} {steps:>5} | {' '.join(f'{m:.3f}' for m in maps):<36} | {min(maps):>5.3f} "
                  f"{statistics.median(maps):>6.3f} | {'<= ' + format(ratio, '.2f'):>15} "
                  f"| {statistics.mean(r['seconds'] for r in runs):>5.0f}", flush=True)
    return 0
