"""Parameters and multiply-accumulates of a detector, part by part, at its config's test scale.

    python -m detector.summary [CONFIG] [key=value ...] [--classes N]

The parts are the trunk (the backbone network, with FPN's top-down path for that head), the RPN
(its head convolutions and proposal making), and the region head (RoI pooling, the box head: C4's
inception 5a/5b or FPN's MLP, and the classifier), measured on the config's number of test regions
(``model.rpn_post_nms_top_n_test``) and per region. MACs are ``torch.utils.flop_counter``'s FLOPs
/ 2, so they are what PyTorch executes; the image is the test scale's landscape 4:3 (capped at
``data.max_size``). The weights are not read: random ones have the same shapes.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.cli import config_and_overrides, run_guarded
from core.config import load_config

from .config import DetConfig, build_model

CLASSES = {"ilsvrc": 200, "voc": 20, "coco": 80}


@dataclass
class Part:
    name: str
    params: int
    macs: int
    note: str = ""


def _macs(fn) -> tuple[object, int]:
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops() // 2


def _params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def image_size(test_scale: int, max_size: int) -> tuple[int, int]:
    """(height, width) of a landscape 4:3 image at the test scale, the longer side capped."""
    w = round(test_scale * 4 / 3)
    return (test_scale, w) if w <= max_size else (round(max_size * 3 / 4), max_size)


@torch.inference_mode()
def summarize(cfg: DetConfig, num_classes: int, seed: int = 0) -> list[Part]:
    """The parts of the detector ``cfg`` builds, then the whole model."""
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(cfg.model, weights=None), num_classes).eval()
    h, w = image_size(cfg.data.test_scale, cfg.data.max_size)
    batch, _ = model.transform([torch.rand(3, h, w)])
    feats, trunk = _macs(lambda: model.backbone(batch.tensors))
    parts = [Part("trunk", _params(model.backbone), trunk, f"at {h}x{w}")]
    if model.rpn is not None:
        _, rpn = _macs(lambda: model.rpn(batch, feats))
        parts.append(Part("rpn", _params(model.rpn), rpn))
    n = cfg.model.rpn_post_nms_top_n_test
    xy = torch.rand(n, 2) * torch.tensor([w * 0.7, h * 0.7])
    regions = torch.cat([xy, xy + 16 + torch.rand(n, 2) * torch.tensor([w * 0.3, h * 0.3])], 1)
    _, head = _macs(lambda: model.roi_heads(feats, [regions], batch.image_sizes))
    parts.append(Part("region head", _params(model.roi_heads), head, f"{n} regions; {head / n / 1e6:.2f} M a region"))
    parts.append(Part("whole model", _params(model), sum(p.macs for p in parts), f"{model.head_kind}, {num_classes} "
                                                                                 "classes"))
    return parts


def table(parts: list[Part]) -> str:
    lines = [f"{'part':<14} {'params':>12} {'GMACs':>9}  note", "-" * 64]
    lines += [f"{p.name:<14} {p.params:>12,} {p.macs / 1e9:>9.2f}  {p.note}" for p in parts]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="*", help="[CONFIG] [key=value ...] (default configs/ilsvrc_det.yaml)")
    p.add_argument("--classes", type=int, help="number of classes (default: 200 ILSVRC, 20 VOC, 80 COCO; 10 toy)")
    a = p.parse_args(argv)
    config, overrides = config_and_overrides(a.args, "configs/ilsvrc_det.yaml")

    def body() -> int:
        cfg = load_config(DetConfig, config, overrides)
        n = a.classes or (10 if cfg.data.toy else CLASSES[cfg.data.format])
        print(table(summarize(cfg, n)))
        return 0

    return run_guarded("detector.summary", body)


if __name__ == "__main__":
    raise SystemExit(main())
