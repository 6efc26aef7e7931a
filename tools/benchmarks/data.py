"""``data``: the detection training pipeline (decode, augment, collate) in one process, i.e. per
loader worker: ours (OpenCV + albumentations) against PIL + torchvision.transforms.v2 doing the
same (multi-scale shorter side with a cap, flip, colour jitter, to uint8 tensors, which the
training loop makes float on the device); then the training DataLoader with 1, 2 and 4 workers
(pinned memory where CUDA exists) beside the detector's own training images/s, and the workers a
GPU at the paper's scale needs."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import cv2
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from core.config import load_config
from core.runtime import select_device
from detector.config import DetConfig
from detector.data import COCODet, DetectionDataset, DetTransform, GroupedBatchSampler, collate

from .common import add_command, median_seconds
from .detector import DETECTORS, one_detector

# C4 on one NVIDIA H200, batch 4 at 600 px, fp32 (tools/benchmark.py detector; docs/gpu.md): training
# 86.7 img/s, inference 194.6 img/s
H200_C4_INFER = 194.6
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "ilsvrc_det.yaml")
TINY_COCO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "tiny_coco")


def add_parser(sub) -> None:
    c = add_command(sub, "data", "detection data pipeline per worker: ours against PIL + torchvision v2", 2, 224, 3, 1,
                    "cpu")
    c.add_argument("--coco", default=os.path.normpath(TINY_COCO))
    c.add_argument("--gpu-rate", type=float, default=H200_C4_INFER,
                   help="the img/s a GPU consumes, to size the workers for (default: C4 inference on one H200, "
                        "the faster of its training and evaluation; docs/benchmarks.md)")
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The detection training pipeline (decode, augment, collate) in one process, i.e. per loader
    worker: ours (OpenCV + albumentations) against PIL + torchvision.transforms.v2 doing the same
    (multi-scale shorter side with a cap, flip, colour jitter, to uint8 tensors)."""
    root = args.coco
    ann = os.path.join(root, "annotations", "instances_train2017.json")
    if not os.path.isfile(ann):
        print(f"benchmark: no tiny COCO at {root} (looked for {ann}): pass --coco DIR", file=sys.stderr)
        return 2
    index = COCODet(ann, os.path.join(root, "train2017"))
    records = index.records
    scales = (480, 576, 688, 864)
    ours = DetectionDataset(records, DetTransform(scales, 1000, train=True, photometric=0.2))
    peer_tf = v2.Compose([v2.RandomShortestSize(min_size=list(scales), max_size=1000), v2.RandomHorizontalFlip(),
                          v2.ColorJitter(0.2, 0.2, 0.2), v2.ToImage(),
                          v2.SanitizeBoundingBoxes(labels_getter=lambda d: d["labels"])])

    def peer_item(r):
        img = Image.open(r.path).convert("RGB")
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(r.boxes), format="XYXY", canvas_size=(r.height, r.width))
        return peer_tf({"image": img, "boxes": boxes, "labels": torch.from_numpy(r.labels)})

    def run_ours():
        for k in range(0, len(ours), args.batch):
            collate([ours[i] for i in range(k, min(k + args.batch, len(ours)))])

    def run_peer():
        for k in range(0, len(records), args.batch):
            items = [peer_item(records[i]) for i in range(k, min(k + args.batch, len(records)))]
            [it["image"] for it in items], [{"boxes": it["boxes"], "labels": it["labels"]} for it in items]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one loader worker uses one core: so do OpenCV and torch here
    cv2.setNumThreads(1)
    rows = []
    for name, fn in (("ours: OpenCV + albumentations", run_ours),
                     (f"PIL + torchvision.transforms.v2 ({torchvision.__version__})", run_peer)):
        sec = median_seconds(fn, torch.device("cpu"), args.warmup, args.repeats)
        rows.append((name, len(records) / sec))
    print(f"{len(records)} tiny COCO photos (about 640x480), shorter side to one of {scales} (cap 1000), flip, colour "
          f"jitter, collate in batches of {args.batch}; one process, one thread; median of {args.repeats}")
    print(f"{'pipeline':<48} {'img/s per worker':>16} {'ratio':>6}")
    for name, ips in rows:
        print(f"{name:<48} {ips:>16.1f} {ips / rows[1][1]:>6.2f}")
    torch.set_num_threads(threads)  # the loader's workers and the model: the whole machine
    cv2.setNumThreads(-1)
    feeding(args, records, scales, rows[0][1])
    return 0


def loader_rate(records: list, scales: tuple[int, ...], workers: int, batch: int, pin: bool) -> float:
    """Images/s of the training DataLoader over ``records`` (aspect-grouped batches), from its
    first batch to its last (the workers' start-up is not counted)."""
    ds = DetectionDataset(records, DetTransform(scales, 1000, train=True, photometric=0.2))
    sampler = GroupedBatchSampler(ds.aspect_ratios(), batch, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate, pin_memory=pin)
    with warnings.catch_warnings():  # more workers than cores is the point of the row, not a mistake
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        it = iter(loader)
    first = next(it)
    tic, n = time.perf_counter(), 0
    for b in it:
        n += len(b.images)
    del first
    return n / max(time.perf_counter() - tic, 1e-9)


def feeding(args: argparse.Namespace, records: list, scales: tuple[int, ...], per_worker: float) -> None:
    """The loader with 1, 2 and 4 workers beside the detector's training rate on this device, and
    the workers that ``args.gpu_rate`` needs."""
    pin = torch.cuda.is_available()
    many = records * max(1, 200 // len(records))  # enough batches to reach a steady rate
    rates = {w: loader_rate(many, scales, w, args.batch, pin) for w in (1, 2, 4)}
    model = one_detector(argparse.Namespace(one=DETECTORS[0], batch=args.batch, size=scales[1], device="auto",
                                            warmup=1, repeats=2))
    need = math.ceil(args.gpu_rate / per_worker)
    configured = load_config(DetConfig, os.path.normpath(CONFIG)).data.workers
    print(f"\ntraining DataLoader, {len(many)} images, batches of {args.batch}, pin_memory={pin}, "
          f"{os.cpu_count()} CPU cores; C4 training on {select_device('auto')} at {scales[1]} px for comparison")
    print(f"{'workers':>7} {'loader img/s':>12} {'C4 train img/s':>14} {'loader / model':>14}")
    for w, r in rates.items():
        print(f"{w:>7} {r:>12.1f} {model['train_ips']:>14.2f} {r / model['train_ips']:>14.1f}")
    print(f"a GPU taking {args.gpu_rate:g} img/s needs {args.gpu_rate:g} / {per_worker:.0f} -> {need} worker(s) per "
          f"process at the per-worker rate above; configs/ilsvrc_det.yaml gives {configured} "
          f"({'enough' if configured >= 2 * need else 'fewer than'} twice that: headroom for JPEGs larger than "
          f"these, slower disks and the uneven cost of the larger scales)")
