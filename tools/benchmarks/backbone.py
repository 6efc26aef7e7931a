"""``backbone``: forward (eval, inference mode) and forward+backward (train mode, cross-entropy)
images/s of our GoogLeNet layouts against torchvision's ``googlenet`` (random weights, the same
input), with effective GFLOP/s (FLOPs counted by ``torch.utils.flop_counter``) and their share of
this machine's large-matmul GFLOP/s, the practical ceiling. Each figure is the median of
``--repeats`` timed runs after ``--warmup`` untimed ones."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from backbone.googlenet import googlenet
from core.runtime import select_device

from .common import add_command, median_seconds


def add_parser(sub) -> None:
    add_command(sub, "backbone", "GoogLeNet layouts against torchvision's googlenet", 32, 224, 5, 1,
                "auto").set_defaults(run=run)


def matmul_ceiling(device: torch.device, warmup: int, repeats: int) -> tuple[float, int]:
    """Best median GFLOP/s of square fp32 matmuls: what this device's BLAS reaches at best."""
    best = (0.0, 0)
    for n in (1024, 2048, 4096):
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        with torch.inference_mode():
            sec = median_seconds(lambda a=a, b=b: a @ b, device, warmup, repeats)
        best = max(best, (2 * n**3 / sec / 1e9, n))
    return best


@dataclass
class Result:
    name: str
    macs_per_image: float
    fwd_ips: float
    fwd_gflops: float
    train_ips: float
    train_gflops: float


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_model(name: str, model: nn.Module, x: torch.Tensor, labels: torch.Tensor, device: torch.device,
                warmup: int, repeats: int) -> Result:
    model = model.to(device)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def train_step() -> None:
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    fwd_flops = count_flops(forward)
    fwd = median_seconds(forward, device, warmup, repeats)
    model.train()
    train_flops = count_flops(train_step)
    train = median_seconds(train_step, device, warmup, repeats)
    n = x.shape[0]
    return Result(name, fwd_flops / 2 / n, n / fwd, fwd_flops / fwd / 1e9, n / train, train_flops / train / 1e9)


def backbone_models() -> list[tuple[str, Callable[[], nn.Module]]]:
    import torchvision

    def tv(channels_last: bool) -> nn.Module:
        m = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    return [
        ("torchvision googlenet", lambda: tv(False)),
        ("torchvision googlenet, channels_last", lambda: tv(True)),
        ("ours paper (LRN), fused 1x1", lambda: googlenet(variant="paper", fused=True)),
        ("ours paper (LRN), unfused", lambda: googlenet(variant="paper", fused=False)),
        ("ours paper, BN, fused 1x1", lambda: googlenet(variant="paper", norm="bn", fused=True)),
        ("ours torchvision layout, fused", lambda: googlenet(variant="torchvision", fused=True)),
    ]


def run(args: argparse.Namespace) -> int:
    device = select_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)
    ceiling, n = matmul_ceiling(device, args.warmup, args.repeats)
    print(f"device {device} ({torch.get_num_threads()} threads), torch {torch.__version__}, batch {args.batch}, "
          f"{args.size}x{args.size}, median of {args.repeats} after {args.warmup} warm-up, allocator "
          f"{'tuned' if args.allocator_tuned else 'glibc default'}")
    print(f"matmul ceiling: {ceiling:.1f} GFLOP/s (fp32 {n}x{n})")
    results = []
    for name, build in backbone_models():
        results.append(bench_model(name, build(), x, labels, device, args.warmup, args.repeats))
        r = results[-1]
        print(f"  measured {name}: {r.fwd_ips:.1f} img/s forward, {r.train_ips:.1f} img/s forward+backward",
              file=sys.stderr, flush=True)
    ref, ref_cl = results[0], results[1]
    head = (f"{'model':<38} {'GMACs':>6} | {'fwd img/s':>9} {'x tv':>5} {'x tvCL':>6} {'GFLOP/s':>8} {'ceil':>5} | "
            f"{'f+b img/s':>9} {'x tv':>5} {'x tvCL':>6} {'GFLOP/s':>8} {'ceil':>5}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.name:<38} {r.macs_per_image / 1e9:>6.3f} | {r.fwd_ips:>9.1f} {r.fwd_ips / ref.fwd_ips:>5.2f} "
              f"{r.fwd_ips / ref_cl.fwd_ips:>6.2f} {r.fwd_gflops:>8.1f} {r.fwd_gflops / ceiling:>5.0%} | "
              f"{r.train_ips:>9.1f} {r.train_ips / ref.train_ips:>5.2f} {r.train_ips / ref_cl.train_ips:>6.2f} "
              f"{r.train_gflops:>8.1f} {r.train_gflops / ceiling:>5.0%}")
    return 0
