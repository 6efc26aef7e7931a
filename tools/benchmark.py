"""Throughput benchmarks, each printed side by side with its peer in one run.

    python tools/benchmark.py backbone [--batch 32] [--size 224] [--repeats 5] [--device auto]
    python tools/benchmark.py pretrain [--batch 32] [--size 224] [--repeats 3] [--workers 1]
    python tools/benchmark.py data [--coco ../shared/data/tiny_coco] [--repeats 3]
    python tools/benchmark.py eval [--images 20000] [--per-image 50]
    python tools/benchmark.py detector [--batch 2] [--size 600]
    python tools/benchmark.py ensemble [--batch 2] [--size 480] [--head c4]
    python tools/benchmark.py proposals [--images 8] [--size 600]
    python tools/benchmark.py engines [--images 16] [--shard 2] [--machines 1 8 32] [--cores 32]
    python tools/benchmark.py learning [--heads fpn c4] [--steps 40 100] [--seeds 5]
    python tools/benchmark.py gpu [--batch 2] [--size 320] [--workers 2]    (on a GPU: --batch 8 --size 600)
    python tools/benchmark.py realphotos [--models ours-fpn ours-c4 r50-fpn mnv3-fpn] [key=value ...]

Each benchmark is a module of ``tools/benchmarks/`` (``eval``'s is ``scoring``), whose docstring
says what it measures.
"""

from __future__ import annotations

import argparse

from benchmarks import (
    backbone,
    data,
    detector,
    engines,
    ensemble,
    gpu,
    learning,
    pretrain,
    proposals,
    realphotos,
    scoring,
)
from core.cli import run_guarded
from core.runtime import tune_cpu_allocator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    for bench in (backbone, pretrain, data, scoring, detector, ensemble, proposals, engines, learning, gpu, realphotos):
        bench.add_parser(sub)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.size < 32 or args.repeats < 1 or args.warmup < 0:
        parser.error("need --batch >= 1, --size >= 32, --repeats >= 1, --warmup >= 0")
    args.allocator_tuned = args.allocator == "tuned" and tune_cpu_allocator()
    return run_guarded("benchmark", lambda: args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
