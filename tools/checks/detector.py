"""The detector as ``tools/train_det.py`` and ``tools/eval_map.py`` run it (the entry's config, C4
and FPN heads): training steps, an evaluation batch, a two-member shared ensemble and TorchScript
export parity, each on the device against the CPU in fp32."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile

import torch

from core.config import load_config
from core.runtime import amp_for, amp_name
from detector.config import DetConfig, build_model
from detector.data.dataset import DetBatch
from detector.data.sample import DataReport
from detector.engine import train_one_epoch
from detector.ensemble import region_probabilities
from detector.export import export, load_runner, parity
from detector.inference.predict import Predictor, predict
from detector.model import GoogLeNetFasterRCNN

from .common import LOSS_RTOL, PROB_ATOL, Meter, Row, compare, guarded, on, relative

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                      "ilsvrc_det.yaml")
NUM_CLASSES = 200
EVERY = 1 << 20


def set_samples(net: GoogLeNetFasterRCNN, anchors: int, regions: int) -> tuple[int, int]:
    """Sample ``anchors`` for the RPN's loss and ``regions`` for the head's, per image; returns
    the sizes it had (:data:`EVERY` for both: no random numbers in the loss, so that the CPU and
    the GPU, with other generators, compute the same)."""
    rpn, heads = net.rpn.fg_bg_sampler, net.roi_heads.fg_bg_sampler
    before = rpn.batch_size_per_image, heads.batch_size_per_image
    rpn.batch_size_per_image, heads.batch_size_per_image = anchors, regions
    return before


def model(head: str, regions: int | None, seed: int = 0) -> GoogLeNetFasterRCNN:
    """The entry's detector (``configs/ilsvrc_det.yaml``) from scratch, with ``head`` and at most
    ``regions`` per image (None: the config's); every detection kept (an untrained model's
    probabilities, about 1/201, are under the config's score threshold)."""
    m = dataclasses.replace(load_config(DetConfig, CONFIG).model, head=head, weights=None, box_score_thresh=0.0)
    if regions is not None:
        m = dataclasses.replace(m, rpn_post_nms_top_n_train=regions, rpn_post_nms_top_n_test=regions)
    torch.manual_seed(seed)
    return build_model(m, NUM_CLASSES)


def batch(n: int, size: int, seed: int = 0) -> DetBatch:
    """``n`` landscape images (size x 4/3 size) of noise with two or three boxes each."""
    g = torch.Generator().manual_seed(seed)
    h, w = size, size * 4 // 3
    images, targets = [], []
    for i in range(n):
        k = 2 + i % 2
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (0.15 + 0.25 * torch.rand(k, 2, generator=g)) * torch.tensor([w, h])
        images.append(torch.rand(3, h, w, generator=g))
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, NUM_CLASSES + 1, (k,),
                                                                                     generator=g),
                        "ignore": torch.zeros(k, dtype=torch.bool), "image_id": str(i), "orig_size": (h, w),
                        "size": (h, w), "position": i})
    return DetBatch(images, targets, DataReport())


def regions(b: DetBatch, per_image: int = 32, seed: int = 1) -> list[torch.Tensor]:
    """Fixed regions to score on both devices (proposals would differ with the smallest change)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for im in b.images:
        h, w = im.shape[1:]
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        out.append(torch.cat([xy, xy + (0.1 + 0.2 * torch.rand(per_image, 2, generator=g)) * torch.tensor([w, h])], 1))
    return out


def train_losses(net: GoogLeNetFasterRCNN, device: torch.device, amp: str, data: DetBatch, n: int,
                 meter: Meter | None = None) -> list[float]:
    """``n`` steps on ``data`` through the detector's ``train_one_epoch``: the loss of each. The
    first samples every anchor and region (its loss is compared), the others as the config does
    (they are timed)."""
    autocast, scaler = amp_for(device, amp)
    configured = set_samples(net, EVERY, EVERY)
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    losses: list[float] = []

    def on_step(step: int, stats: dict) -> None:
        losses.append(stats["loss"])
        if step == 1:
            set_samples(net, *configured)
            if meter is not None:  # the first step (cuDNN's autotuning, allocations) is not timed
                meter.start()
    train_one_epoch(net, [data] * n, optimizer, lambda step: 1e-3, epoch=0, epochs=1, steps_per_epoch=n,
                    start_step=0, device=device, seed=0, scaler=scaler, autocast=autocast, progress=False,
                    on_step=on_step)
    return losses


def _train(row: Row, device: torch.device, mode: str, base: GoogLeNetFasterRCNN, reference: float,
           data: DetBatch, steps: int) -> None:
    meter = Meter(device)
    losses = train_losses(on(base, device), device, mode, data, steps, meter)
    row.images_per_s, row.peak_mib = meter.stop(len(data.images) * (steps - 1))
    compare(row, "loss rel. diff", relative(losses[0], reference), LOSS_RTOL[row.dtype])
    if not all(math.isfinite(v) for v in losses):
        row.ok, row.detail = False, f"non-finite loss: {losses}"


def train_rows(device: torch.device, modes: list[str], size: dict) -> list[Row]:
    rows = []
    data = batch(size["det_batch"], size["det_size"])
    cpu = torch.device("cpu")
    for head in ("c4", "fpn"):
        base = model(head, size["regions"])
        reference = train_losses(on(base, cpu), cpu, "off", data, 1)[0]
        rows += [guarded(Row(f"detector train step, {head}", amp_name(device, mode)), _train, device, mode, base,
                         reference, data, size["steps"]) for mode in modes]
    return rows


def _finite(boxes: list, scores: list) -> bool:
    return all(math.isfinite(float(b.sum())) for b in boxes) and all(math.isfinite(float(s.sum())) for s in scores)


def _eval(row: Row, device: torch.device, mode: str, nets: list[GoogLeNetFasterRCNN], data: DetBatch,
          boxes: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    autocast, _ = amp_for(device, mode)
    moved = [on(m, device) for m in nets]
    images = [im.to(device) for im in data.images]
    meter = Meter(device)
    for timed in (False, True):  # the first pass (cuDNN's autotuning, allocations) is not timed
        if timed:
            meter.start()
        # what eval_map, Detector and training's evaluation run: one member, or the shared ensemble
        dets, _ = predict(Predictor(moved, "shared", autocast=autocast), [data], device, len(images))
        ok = _finite([d.boxes for d in dets], [d.scores for d in dets])
    row.images_per_s, row.peak_mib = meter.stop(len(images))
    with autocast():
        got = region_probabilities(moved, images, boxes)
    compare(row, "region prob. diff", max(float((g.cpu() - r).abs().max()) for g, r in zip(got, reference)),
            PROB_ATOL[row.dtype])
    if not ok:
        row.ok, row.detail = False, "non-finite detections"


def eval_rows(device: torch.device, modes: list[str], size: dict) -> list[Row]:
    """One evaluation batch of one member and of a two-member shared ensemble (``Predictor``);
    both compared with the CPU on the class probabilities of the same fixed regions."""
    data = batch(size["det_batch"], size["det_size"], seed=2)
    boxes = regions(data)
    members = [model("c4", size["regions"], seed=k).eval() for k in (0, 1)]
    rows = []
    for name, nets in (("evaluation batch", members[:1]), ("ensemble of 2, shared", members)):
        reference = region_probabilities(nets, data.images, boxes)
        rows += [guarded(Row(name, amp_name(device, mode)), _eval, device, mode, nets, data, boxes, reference)
                 for mode in modes]
    return rows


def _export(row: Row, device: torch.device, data: DetBatch, regions: int | None) -> None:
    net = on(model("c4", regions).eval(), device)
    with tempfile.TemporaryDirectory() as tmp:
        path = export(net, "torchscript", os.path.join(tmp, "model.pt"), data.images[0].to(device), {})
        meter = Meter(device)
        meter.start()
        check = parity(net, load_runner("torchscript", path, device), data.images)
        row.images_per_s, row.peak_mib = meter.stop(len(data.images))
    row.detail = f"{check['detections']} detections, boxes within {check['max_box_diff']:.2g} px"
    if not check["ok"]:
        row.ok, row.detail = False, check["problem"]


def export_row(device: torch.device, size: dict) -> Row:
    """TorchScript traced on the device, against the eager model there (fp32: exported files carry
    no autocast)."""
    return guarded(Row("TorchScript export parity", "fp32"), _export, device, batch(2, size["det_size"], seed=3),
                   size["regions"])
