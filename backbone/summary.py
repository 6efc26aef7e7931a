"""A table like the paper's Table 1: each layer's output size, parameters and MACs.

    python -m backbone.summary [--variant paper|torchvision] [--norm lrn|bn] [--size 224] [--aux]

MACs are counted by ``torch.utils.flop_counter`` (FLOPs / 2), layer by layer, so the totals are
what PyTorch actually executes, not a hand formula. The paper's own columns are rounded and partly
wrong (spec §1); the totals here are the ones the tests hold: 6,998,552 parameters and 1.583 G
MACs for the paper layout.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .aux import GoogLeNetWithAux
from .googlenet import INCEPTION_CFG, GoogLeNet, googlenet


@dataclass
class Row:
    name: str
    kind: str
    shape: tuple[int, ...]  # output [C, H, W] or [C]
    params: int
    macs: int
    widths: tuple[int, ...] = ()  # Inception: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return f"conv {module.kernel_size[0]}x{module.kernel_size[1]}/{module.stride[0]}"
    if hasattr(module, "conv") and isinstance(module.conv, nn.Conv2d):
        return _describe(module.conv)
    if isinstance(module, nn.MaxPool2d):
        return f"max pool {module.kernel_size}x{module.kernel_size}/{module.stride}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "avg pool (global)"
    if isinstance(module, nn.Dropout):
        return f"dropout ({module.p:.0%})"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Identity):
        return "-"
    if type(module).__name__ == "Inception":
        return "inception"
    return type(module).__name__.lower()


def _run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    with FlopCounterMode(display=False) as counter:
        y = module(x)
    return y, counter.get_total_flops() // 2


def layer_table(model: GoogLeNet | GoogLeNetWithAux, size: int = 224) -> list[Row]:
    """Run one ``size`` x ``size`` image through ``model`` layer by layer (eval mode, no grad)."""
    aux = model if isinstance(model, GoogLeNetWithAux) else None
    net = model.backbone if aux is not None else model
    rows: list[Row] = []
    was_training = net.training
    model.eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, size, size)
        for name in net._LAYERS:
            module = getattr(net, name)
            if isinstance(module, nn.Identity):  # LRN slots of the BN layout
                continue
            x, macs = _run(module, x)
            widths = INCEPTION_CFG[name[-2:]] if name.startswith("inception") else ()
            rows.append(Row(name, _describe(module), tuple(x.shape[1:]), sum(p.numel() for p in module.parameters()),
                            macs, widths))
            if aux is not None and name in ("inception4a", "inception4d"):
                head = aux.aux1 if name == "inception4a" else aux.aux2
                y, macs = _run(head, x)
                rows.append(Row(f"aux{1 if head is aux.aux1 else 2} (on {name[-2:]})", "auxiliary head",
                                tuple(y.shape[1:]), sum(p.numel() for p in head.parameters()), macs))
        for name in ("avgpool", "dropout", "fc"):
            module = getattr(net, name)
            if name == "dropout":
                x = torch.flatten(x, 1)
            x, macs = _run(module, x)
            rows.append(Row(name, _describe(module), tuple(x.shape[1:]), sum(p.numel() for p in module.parameters()),
                            macs))
    model.train(was_training)
    return rows


def format_table(rows: list[Row]) -> str:
    head = (f"{'layer':<18} {'type':<18} {'output':>14} {'#1x1':>5} {'#3x3r':>5} {'#3x3':>5} {'#5x5r':>5} "
            f"{'#5x5':>5} {'pool':>5} {'params':>11} {'MACs':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        shape = "x".join(str(d) for d in (r.shape[1:] + r.shape[:1] if len(r.shape) == 3 else r.shape))
        w = [str(v) for v in r.widths] or [""] * 6
        lines.append(f"{r.name:<18} {r.kind:<18} {shape:>14} " + " ".join(f"{v:>5}" for v in w)
                     + f" {r.params:>11,} {r.macs / 1e6:>9.1f}M")
    lines.append("-" * len(head))
    total_p, total_m = sum(r.params for r in rows), sum(r.macs for r in rows)
    lines.append(f"{'total':<18} {'':<18} {'':>14} {'':>35} {total_p:>11,} {total_m / 1e9:>9.3f}G")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backbone.summary", description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("paper", "torchvision"), default="paper")
    parser.add_argument("--norm", choices=("lrn", "bn"), default=None, help="default: lrn (paper), bn (torchvision)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    parser.add_argument("--aux", action="store_true", help="include the auxiliary heads (pretraining network)")
    parser.add_argument("--num-classes", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.size < 32:
        parser.error(f"--size {args.size} is too small: GoogLeNet needs at least 32 pixels")
    try:
        model = googlenet(args.num_classes, variant=args.variant, norm=args.norm, aux=args.aux)
    except ValueError as e:
        parser.error(str(e))
    norm = model.backbone.norm if isinstance(model, GoogLeNetWithAux) else model.norm
    print(f"GoogLeNet variant={args.variant} norm={norm} input {args.size}x{args.size}"
          f"{' with auxiliary heads' if args.aux else ''}")
    print(format_table(layer_table(model, args.size)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
