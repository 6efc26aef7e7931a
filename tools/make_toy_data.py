"""Make the miniature ILSVRC (DET and CLS-LOC, in the real 2015 layout) from a seed.

    python tools/make_toy_data.py [--root data/toy_ilsvrc] [--train 120] [--val 60] [--negatives 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

from core.cli import run_guarded
from detector.data.toy import make_toy_ilsvrc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/toy_ilsvrc")
    p.add_argument("--train", type=int, default=120, help="DET training images with objects")
    p.add_argument("--val", type=int, default=60, help="DET validation images")
    p.add_argument("--negatives", type=int, default=20, help="DET training images without objects (no XML)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--cls-per-class", type=int, default=80, help="CLS-LOC training images per class")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not 1 <= a.classes <= 10 or min(a.train, a.val, a.negatives, a.cls_per_class) < 0:
        p.error("--classes must be 1..10 and counts >= 0")

    def body() -> int:
        tic = time.perf_counter()
        make_toy_ilsvrc(a.root, a.train, a.val, a.negatives, a.classes, a.cls_per_class, a.seed)
        print(f"make_toy_data: miniature ILSVRC at {a.root} ({time.perf_counter() - tic:.1f} s): DET in "
              f"{a.root}/Data/DET, CLS-LOC class folders in {a.root}/Data/CLS-LOC")
        return 0

    return run_guarded("make_toy_data", body)


if __name__ == "__main__":
    raise SystemExit(main())
