"""``ensemble``: the shared-proposal ensemble of N members against N single-model runs on the same
images."""

from __future__ import annotations

import argparse

import torch

from core.runtime import select_device
from detector.ensemble import detect_shared
from detector.model import googlenet_faster_rcnn

from .common import add_command, median_seconds


def add_parser(sub) -> None:
    c = add_command(sub, "ensemble", "the shared-proposal ensemble against that many single-model runs", 2, 480, 2, 1,
                    "auto")
    c.add_argument("--head", choices=("c4", "fpn"), default="c4")
    c.add_argument("--members", type=int, nargs="+", default=[1, 2, 6])
    c.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The shared-proposal ensemble of N members against N single-model runs on the same images."""
    device = select_device(args.device)
    torch.manual_seed(0)
    members = [googlenet_faster_rcnn(200, head=args.head, rpn_post_nms_top_n_test=300).eval().to(device)
               for _ in range(max(args.members))]
    for m in members:
        # untrained RPNs keep 80-300 proposals after their NMS (trained ones fill their 300), while
        # a union of several always fills 300: without the RPN's NMS every member and the union
        # score exactly 300 regions an image, as trained members do
        m.rpn.nms_thresh = 1.0
    images = [torch.rand(3, args.size, args.size * 4 // 3, device=device) for _ in range(args.batch)]
    print(f"device {device}, {args.head} members (random weights, 200 classes, 300 regions an image), batch "
          f"{args.batch} at {args.size}x{args.size * 4 // 3}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"{'members':>7} {'N single runs s':>15} {'ensemble s':>10} {'ensemble / singles':>18}")
    for n in args.members:
        models = members[:n]

        def singles(models=models):
            with torch.inference_mode():
                for m in models:
                    m(images)

        t_single = median_seconds(singles, device, args.warmup, args.repeats)
        t_ens = median_seconds(lambda models=models: detect_shared(models, images), device, args.warmup, args.repeats)
        print(f"{n:>7} {t_single:>15.2f} {t_ens:>10.2f} {t_ens / t_single:>18.2f}", flush=True)
    return 0
