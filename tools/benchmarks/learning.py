"""``learning``: how well each head learns real photos from scratch, over several seeds.

The first tiny-COCO training photos (``../shared/data/tiny_coco``: 2-4 objects each, every object
at least 24 px across at 160 px; four by default, ``--batch``) are learned from scratch by each
head through the detector's own ``train_one_epoch`` (all the photos a step, AdamW as configured,
gradients clipped at 5), then detected by ``predict`` and scored on the same photos (does the head
learn, not does it generalise): VOC mAP@0.5; the share of objects whose class the region head names
on their own boxes; and how well it ranks objects above background (:func:`head_on_objects`). The
last two tell a head that has learned the photos from one whose loss has fallen by learning that
most regions are background: C4 on four photos at 40 steps (loss at 0.41-0.46 of its start, mAP
0.01-0.15, objectness 0.34-0.52: not yet). ``tests/test_real_photos.py`` keeps the short version
(one photo) with marks under the seeds' spread that this prints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from torchvision.ops import box_iou

from detector.config import DetOptimConfig, build_optimizer
from detector.data.build import DetDataConfig, build_detection_data
from detector.data.dataset import collate, images_to
from detector.engine import lr_at, train_one_epoch
from detector.evaluation import evaluate_voc
from detector.inference.predict import Predictor, predict
from detector.model import googlenet_faster_rcnn
from detector.refine import head_outputs

from .common import add_command

TINY_COCO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))), "shared", "data", "tiny_coco")
SCALE = 160  # shorter side: 640x480 photos at a quarter of their size
# per head: learning rate, regions sampled per image (C4 runs inception 5a/5b on each)
HEADS = {"fpn": (1e-3, 32), "c4": (2e-3, 16)}


def photos(count: int = 4, root: str = TINY_COCO):
    """The first ``count`` training photos with 2-4 objects, none a crowd, every object at least 24 px
    across at :data:`SCALE` (smaller ones are a few feature-map cells: a test of anchors, not of
    learning): ``(batch, records)``."""
    cfg = DetDataConfig(format="coco", root=root, train_split="train2017", val_split="train2017", scales=[SCALE],
                        test_scale=SCALE, max_size=2 * SCALE, flip=0.0, photometric=0.0, workers=0)
    ds, index = build_detection_data(cfg, train=False)

    def fits(r) -> bool:
        short = (np.minimum(r.boxes[:, 2] - r.boxes[:, 0], r.boxes[:, 3] - r.boxes[:, 1])
                 * SCALE / min(r.width, r.height))  # [N]
        return 2 <= len(r.boxes) <= 4 and not r.ignore.any() and bool((short >= 24).all())

    ds.records = index.records = [r for r in index.records if fits(r)][:count]
    return collate([ds[i] for i in range(len(ds.records))]), index.records


def background_boxes_xyxy(gt: torch.Tensor, height: int, width: int, side: int = 48, stride: int = 16) -> torch.Tensor:
    """Square boxes of ``side`` px every ``stride`` px that overlap no object (IoU < 0.1): ``[B, 4]``."""
    ys, xs = torch.meshgrid(torch.arange(0, height - side + 1, stride), torch.arange(0, width - side + 1, stride),
                            indexing="ij")
    boxes = torch.stack([xs, ys, xs + side, ys + side], -1).reshape(-1, 4).float()  # [G, 4]
    return boxes[box_iou(boxes, gt).amax(1) < 0.1] if len(gt) else boxes


@torch.no_grad()
def head_on_objects(model, batch) -> dict:
    """The region head, in eval mode, on each object's own ground-truth box and on background
    boxes (:func:`background_boxes_xyxy`), in one pass:

    - ``"classified"``: the share of objects whose most likely object class is theirs (of 80;
      early in training background outscores every class on most boxes, and the ranking among
      the classes is what is learned);
    - ``"objectness"``: how well it ranks objects above background, the chance that an object's
      box gets a higher object probability (1 - background) than a background box: 0.5 by chance,
      1.0 when every object outranks all background."""
    model.eval()
    images = model.transform(images_to(batch.images, torch.device("cpu")))[0]
    features = model.backbone(images.tensors)
    gt = [t["boxes"] for t in batch.targets]
    bg = [background_boxes_xyxy(g, int(h), int(w)) for g, (h, w) in zip(gt, images.image_sizes)]
    probs, _ = head_outputs(model, features, [torch.cat([g, b]) for g, b in zip(gt, bg)], images.image_sizes)
    is_object = torch.cat([torch.arange(len(g) + len(b)) < len(g) for g, b in zip(gt, bg)])  # image by image
    labels = torch.cat([t["labels"] for t in batch.targets])  # [N]
    classified = probs[is_object, 1:].argmax(1) + 1 == labels  # [N]
    fg = 1 - probs[:, 0]
    pos, neg = fg[is_object], fg[~is_object]  # [N], [B]
    objectness = (pos[:, None] > neg[None, :]).float().mean() + 0.5 * (pos[:, None] == neg[None, :]).float().mean()
    return {"classified": float(classified.float().mean()), "objectness": float(objectness)}


def learn(head: str, steps: int, seed: int, batch, records) -> dict:
    """One head from scratch on the photos (:func:`photos`): ``{"first", "last"}`` (the mean loss
    of the first and last tenth of the steps), ``"map"`` (VOC mAP@0.5 on the photos),
    ``"classified"`` and ``"objectness"`` (:func:`head_on_objects`) and ``"seconds"``."""
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
            "map": float(evaluate_voc(records, dets, 80)["map"]), **head_on_objects(model, batch),
            "seconds": time.perf_counter() - tic}


def add_parser(sub) -> None:
    c = add_command(sub, "learning", "each head learning real photos from scratch, over several seeds (--batch: "
                    "how many photos)", 4, SCALE, 1, 0, "cpu")
    c.add_argument("--heads", nargs="+", choices=tuple(HEADS), default=list(HEADS))
    c.add_argument("--steps", type=int, nargs="+", default=[40, 100])
    c.add_argument("--seeds", type=int, default=5)
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Each head at each step count over ``--seeds`` seeds: mAP per seed, the lowest share of
    objects classified and objectness, the highest loss ratio, seconds a run."""
    if not os.path.isdir(TINY_COCO):
        print(f"benchmark learning: needs the tiny COCO photos at {TINY_COCO}")
        return 2
    batch, records = photos(args.batch)
    print(f"{len(records)} tiny-COCO photos ({sum(len(r.boxes) for r in records)} objects) at {SCALE} px, from "
          f"scratch, all a step, AdamW (fused), {args.seeds} seeds; on the photos: VOC mAP@0.5, the share of objects "
          "classified on their own boxes, objectness (0.5: none)")
    print(f"{'head':>4} {'steps':>5} | {'mAP per seed':<36} | {'min':>5} {'median':>6} | {'classified':>10} "
          f"| {'objectness':>10} | {'loss last/first':>15} | {'s/run':>5}")
    for head in args.heads:
        for steps in args.steps:
            runs = [learn(head, steps, seed, batch, records) for seed in range(args.seeds)]
            maps = [r["map"] for r in runs]
            ratio = max(r["last"] / r["first"] for r in runs)
            print(f"{head:>4} {steps:>5} | {' '.join(f'{m:.3f}' for m in maps):<36} | {min(maps):>5.3f} "
                  f"{statistics.median(maps):>6.3f} | {'>= ' + format(min(r['classified'] for r in runs), '.2f'):>10} "
                  f"| {'>= ' + format(min(r['objectness'] for r in runs), '.2f'):>10} "
                  f"| {'<= ' + format(ratio, '.2f'):>15} "
                  f"| {statistics.mean(r['seconds'] for r in runs):>5.0f}", flush=True)
    return 0
