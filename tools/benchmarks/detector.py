"""``detector``: training and inference images/s and peak memory of our detectors (C4, FPN) against
torchvision's Faster R-CNNs (ResNet-50 FPN, MobileNet-v3 FPN), each model in its own process so
that its peak memory is its own."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn

from core.runtime import select_device
from detector.model import googlenet_faster_rcnn

from .common import add_command, median_seconds

BENCHMARK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmark.py")


def add_parser(sub) -> None:
    c = add_command(sub, "detector", "detector training and inference against torchvision's Faster R-CNNs", 2, 600,
                    2, 1, "auto")
    c.add_argument("--one", choices=DETECTORS, help=argparse.SUPPRESS)
    c.set_defaults(run=run)


DETECTORS = ("ours c4 (GoogLeNet, Inception region head)", "ours fpn (GoogLeNet + FPN)",
             "torchvision fasterrcnn_resnet50_fpn", "torchvision fasterrcnn_mobilenet_v3_large_fpn")


def _detector(name: str, num_classes: int, short: int, max_size: int) -> nn.Module:
    if name.startswith("ours"):
        return googlenet_faster_rcnn(num_classes, head="c4" if "c4" in name else "fpn")
    build = fasterrcnn_resnet50_fpn if "resnet50" in name else fasterrcnn_mobilenet_v3_large_fpn
    # random weights, no download; their transform resizes to the same scale (a no-op on these images)
    return build(weights=None, weights_backbone=None, num_classes=num_classes + 1, min_size=short, max_size=max_size)


def one_detector(args: argparse.Namespace) -> dict:
    """One model in this process (so that its peak memory is its own): train and inference img/s."""
    device = select_device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images, targets = [], []
    for k in range(args.batch):  # ILSVRC-like: 600 px shorter side, landscape and portrait
        h, w = (args.size, int(args.size * 1.33)) if k % 2 == 0 else (int(args.size * 1.33), args.size)
        images.append(torch.rand(3, h, w, device=device))
        xy = rng.uniform(0, min(h, w) / 2, (3, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(40, min(h, w) / 2, (3, 2))], 1)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.tensor(rng.integers(1, 201, 3), device=device)})
    model = _detector(args.one, 200, args.size, 1000).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def train_step():
        model.train()
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    def infer():
        model.eval()
        with torch.inference_mode():
            model(images)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train = median_seconds(train_step, device, args.warmup, args.repeats)
    test = median_seconds(infer, device, args.warmup, args.repeats)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"name": args.one, "train_ips": args.batch / train, "infer_ips": args.batch / test, "peak_bytes": peak,
            "params": sum(p.numel() for p in model.parameters())}


def run(args: argparse.Namespace) -> int:
    if args.one:
        print("RESULT " + json.dumps(one_detector(args)))
        return 0
    rows = []
    for name in DETECTORS:
        cmd = [sys.executable, BENCHMARK, "detector", "--one", name, "--batch", str(args.batch),
               "--size", str(args.size), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--device", args.device, "--allocator", args.allocator]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(f"benchmark: {name} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}",
                  file=sys.stderr)
            return 2
        rows.append(json.loads(line[0][7:]))
        print(f"  measured {name}: train {rows[-1]['train_ips']:.2f} img/s, "
              f"inference {rows[-1]['infer_ips']:.2f} img/s",
              file=sys.stderr, flush=True)
    device = select_device(args.device)
    mem = "peak GPU memory" if device.type == "cuda" else "peak RSS"
    print(f"device {device}, batch {args.batch}, shorter side {args.size} (ILSVRC config scale), 200 classes, random "
          f"weights, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'model':<46} {'params':>7} {'train img/s':>11} {'infer img/s':>11} {mem:>15}")
    for r in rows:
        print(f"{r['name']:<46} {r['params'] / 1e6:>6.1f}M {r['train_ips']:>11.2f} {r['infer_ips']:>11.2f} "
              f"{r['peak_bytes'] / 2**30:>13.2f} G")
    return 0
