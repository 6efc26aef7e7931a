"""``gpu``: end-to-end images/s from real photos (tiny COCO's training photos, through a
``DataLoader`` with workers), ``data.decode`` cpu against device: pretraining steps (the paper's
crops, aux heads) of our GoogLeNet beside torchvision's ``googlenet``, and our C4 detector's
training and evaluation beside torchvision's ``fasterrcnn_resnet50_fpn``, each peer fed by the same
loader. With the loader's share of the step (time blocked on the workers), the decode-and-augment
share (the device path's work, or the copy of the cpu path) and the peak GPU memory. On a GPU:
``--batch 8 --size 600 --pretrain-batch 256``; on the CPU its defaults are small."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from backbone.aux import aux_loss
from backbone.googlenet import googlenet
from backbone.pretrain.data import ClassificationDataset, train_transform
from backbone.pretrain.data import collate as pretrain_collate
from backbone.pretrain.device import images_on
from core.runtime import select_device, synchronize
from detector.data import COCODet
from detector.data.dataset import DetectionDataset, collate, images_to
from detector.data.transforms import DetTransform
from detector.engine import targets_to
from detector.model import googlenet_faster_rcnn

from .common import add_command
from .detector import _detector
from .pretrain import _TorchvisionAux

SHARED_COCO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "..",
                           "shared", "data", "tiny_coco")


def add_parser(sub) -> None:
    c = add_command(sub, "gpu", "end-to-end img/s from photos, data.decode cpu against device", 2, 320, 6, 2, "auto")
    c.add_argument("--coco", default=SHARED_COCO, help="a COCO-format folder with train2017/ (default: tiny COCO)")
    c.add_argument("--workers", type=int, default=2, help="loader workers")
    c.add_argument("--pretrain-batch", type=int, default=8, help="pretraining's batch (224 px crops)")
    c.set_defaults(run=run)


@dataclass
class Row:
    name: str
    decode: str
    images_per_s: float
    loader_share: float
    decode_share: float
    peak_mib: float | None


def longest(size: int) -> int:
    """The longer side's cap for a shorter side of ``size`` (600 -> 1000, as ILSVRC's and COCO's)."""
    return int(size * 5 / 3)


def endless(loader: DataLoader):
    """The loader's batches, pass after pass (each pass through the workers again)."""
    while True:
        yield from loader


def timed(loader: DataLoader, to_device: Callable, step: Callable, device: torch.device, warmup: int,
          steps: int) -> tuple[float, float, float]:
    """``(images/s, loader share, decode share)`` over ``steps`` batches after ``warmup``."""
    batches = endless(loader)
    wait = decode = total = 0.0
    n = 0
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        inputs = to_device(batch)
        synchronize(device)
        t2 = time.perf_counter()
        step(*inputs)
        synchronize(device)
        if k >= warmup:
            wait, decode, total = wait + t1 - t0, decode + t2 - t1, total + time.perf_counter() - t0
            n += len(inputs[0])
    return n / total, wait / total, decode / total


def row(name: str, decode: str, loader: DataLoader, to_device: Callable, step: Callable, args, device) -> Row:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ips, wait, dec = timed(loader, to_device, step, device, args.warmup, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    print(f"  measured {name}, decode {decode}: {ips:.2f} img/s", flush=True)
    return Row(name, decode, ips, wait, dec, peak)


def detection_row(name: str, model: torch.nn.Module, train: bool, decode: str, records, args, device) -> Row:
    model = model.to(device).train(train)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)

    def step(images, targets) -> None:
        if train:
            sum(model(images, targets).values()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(images)

    transform = DetTransform((args.size,), longest(args.size), train=train, flip=0.5, photometric=0.2)
    ds = DetectionDataset(records, transform, seed=0, decode=decode)
    loader = DataLoader(ds, batch_size=args.batch, num_workers=args.workers, collate_fn=collate,
                        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda")
    return row(name, decode, loader, lambda b: (images_to(b.images, device, non_blocking=True),
                                                targets_to(b.targets, device)), step, args, device)


def pretraining_row(name: str, model: torch.nn.Module, decode: str, photos: list[str], args, device) -> Row:
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step(images, labels) -> None:
        logits, aux1, aux2 = model(images)
        aux_loss(*(F.cross_entropy(x, labels) for x in (logits, aux1, aux2))).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    ds = ClassificationDataset([(p, k % 4) for k, p in enumerate(photos)], train_transform(224), seed=0,
                               decode=decode)
    loader = DataLoader(ds, batch_size=args.pretrain_batch, num_workers=args.workers, collate_fn=pretrain_collate,
                        persistent_workers=args.workers > 0, pin_memory=device.type == "cuda", drop_last=True)
    return row(name, decode, loader, lambda b: (images_on(b.images, device), b.labels.to(device)), step, args, device)


def run(args: argparse.Namespace) -> int:
    device = select_device(args.device)
    images = os.path.join(args.coco, "train2017")
    records = COCODet(os.path.join(args.coco, "annotations", "instances_train2017.json"), images).records
    photos, classes = [r.path for r in records], 80
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}; {len(records)} photos of "
          f"{args.coco}; pretraining: batch {args.pretrain_batch} of 224 px crops; detection: batch {args.batch} "
          f"at {args.size} px; {args.workers} loader workers, {args.repeats} steps after {args.warmup}", flush=True)
    rows = []
    for decode in ("cpu", "device"):
        torch.manual_seed(0)
        rows.append(pretraining_row("ours paper (LRN), pretraining", googlenet(4, aux=True), decode, photos, args,
                                    device))
    torch.manual_seed(0)
    rows.append(pretraining_row("torchvision googlenet, pretraining", _TorchvisionAux(), "cpu", photos, args, device))
    for train in (True, False):
        what = "training" if train else "evaluation"
        for decode in ("cpu", "device"):
            torch.manual_seed(0)
            rows.append(detection_row(f"ours c4, {what}", googlenet_faster_rcnn(classes, head="c4"), train, decode,
                                      records, args, device))
        torch.manual_seed(0)
        peer = _detector("torchvision fasterrcnn_resnet50_fpn", classes, args.size, longest(args.size))
        rows.append(detection_row(f"torchvision R50-FPN, {what}", peer, train, "cpu", records, args, device))
    head = f"{'model':<36} {'decode':<7} {'img/s':>7} {'loader':>7} {'decode+aug':>10} {'peak GPU MiB':>12}"
    print(head)
    print("-" * len(head))
    for r in rows:
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        print(f"{r.name:<36} {r.decode:<7} {r.images_per_s:>7.2f} {r.loader_share:>7.0%} {r.decode_share:>10.0%} "
              f"{peak:>12}")
    return 0
