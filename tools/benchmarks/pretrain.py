"""``pretrain``: images/s of the data pipeline alone (one worker), and of the whole training step
(data loader, forward/backward with the auxiliary losses, SGD) for ours and torchvision's
``googlenet`` driven by the same ``train_one_epoch``; and the miniature's top-1 and wall time
from its last ``make demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from backbone.googlenet import googlenet
from backbone.pretrain.config import OptimConfig, build_optimizer
from backbone.pretrain.data import (
    ClassificationDataset,
    EpochSampler,
    class_folder_samples,
    collate,
    find_classes,
    train_transform,
)
from backbone.pretrain.engine import Schedule, train_one_epoch
from core.miniature import SHAPES, TOY_WNIDS, background, class_color, draw_shape
from core.runtime import select_device

from .common import add_command


def add_parser(sub) -> None:
    c = add_command(sub, "pretrain", "the pretraining pipeline against torchvision's googlenet, same loop", 32, 224, 3,
                    1, "auto")
    c.add_argument("--workers", type=int, default=1)
    c.set_defaults(run=run)


def _photo_like_folder(root: str, n: int, size: tuple[int, int] = (500, 375)) -> str:
    """ImageNet-sized JPEGs (drawn shapes on noisy backgrounds) in class folders, for timing."""
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        c = i % 4
        folder = os.path.join(root, "train", TOY_WNIDS[c])
        os.makedirs(folder, exist_ok=True)
        img = background(rng, h, w)
        draw_shape(img, SHAPES[c], w / 2, h / 2, 0.6 * h, class_color(rng, c))
        cv2.imwrite(os.path.join(folder, f"{i}.JPEG"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root


class _TorchvisionAux(nn.Module):
    """torchvision's googlenet with aux heads, returning (logits, aux1, aux2) like ours in training."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)

    def forward(self, x):
        out = self.net(x)  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1) in train mode
        return out.logits, out.aux_logits1, out.aux_logits2


def run(args: argparse.Namespace) -> int:
    """The pretraining pipeline: data alone per worker, then data + forward/backward + SGD, with
    ours and torchvision's googlenet trained by the same loop (train_one_epoch)."""
    device = select_device(args.device)
    steps = args.repeats
    n_images = args.batch * (steps + 1)
    with tempfile.TemporaryDirectory() as tmp:
        root = _photo_like_folder(tmp, n_images)
        classes = find_classes(os.path.join(root, "train"))
        samples = class_folder_samples(os.path.join(root, "train"), classes)
        ds = ClassificationDataset(samples, train_transform(args.size), seed=0)
        ds[0]
        tic = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        data_ips = len(ds) / (time.perf_counter() - tic)
        print(f"device {device} ({torch.get_num_threads()} threads), batch {args.batch}, {args.size}x{args.size} crops "
              f"from 500x375 JPEGs, {args.workers} loader worker(s), {steps} timed steps after 1 warm-up")
        print(f"data pipeline alone (decode, crop, resize, flip, photometric, normalise): {data_ips:.1f} img/s "
              "per worker")
        rows = []
        pool = "paper" if args.size == 224 else "adaptive"
        builds = [("ours paper (LRN)", lambda: googlenet(4, variant="paper", aux=True, aux_pool=pool)),
                  ("ours paper, BN", lambda: googlenet(4, variant="paper", norm="bn", aux=True, aux_pool=pool)),
                  ("torchvision googlenet (aux)", _TorchvisionAux)]
        for name, build in builds:
            torch.manual_seed(0)
            model = build().to(device)
            optimizer = build_optimizer(model, OptimConfig(), 0.01)
            sampler = EpochSampler(len(ds), args.batch, seed=0)
            schedule = Schedule(0.01, 1, sampler.steps())
            loader = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=args.workers,
                                collate_fn=collate, drop_last=True, pin_memory=device.type == "cuda")
            # step 1 warms up (allocations, oneDNN kernels); the rest are timed
            marks: list[float] = []
            train_one_epoch(model, loader, optimizer, schedule, epoch=0, start_step=0, device=device, seed=0,
                            progress=False, on_step=lambda step, s, marks=marks: marks.append(time.perf_counter()))
            ips = args.batch * (len(marks) - 1) / (marks[-1] - marks[0])
            rows.append((name, ips))
            print(f"  measured {name}: {ips:.1f} img/s", file=sys.stderr, flush=True)
    ref = rows[-1][1]
    print(f"{'model':<30} {'train img/s':>11} {'x torchvision':>14}")
    for name, ips in rows:
        print(f"{name:<30} {ips:>11.1f} {ips / ref:>14.2f}")
    metrics = os.path.join("work_dirs", "googlenet_toy", "metrics.json")
    if os.path.isfile(metrics):
        with open(metrics) as f:
            m = json.load(f)
        print(f"miniature (configs/pretrain_toy.yaml, from {metrics}): top-1 {m.get('main_top1', float('nan')):.1f}%, "
              f"EMA top-1 {m.get('ema_main_top1', float('nan')):.1f}%, "
              f"wall {m.get('wall_seconds', float('nan')):.0f} s")
    else:
        print("miniature: no work_dirs/googlenet_toy/metrics.json yet (make demo writes it)")
    return 0
