"""Make the miniature ILSVRC (DET and CLS-LOC, in the real 2015 layout) from a seed.

    python tools/make_toy_data.py [--root data/toy_ilsvrc] [--train 120] [--val 60] [--negatives 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.data.toy import make_toy_ilsvrc  # noqa: E402


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
    tic = time.perf_counter()
    try:
        make_toy_ilsvrc(a.root, a.train, a.val, a.negatives, a.classes, a.cls_per_class, a.seed)
    except FileExistsError as e:
        print(f"make_toy_data: {e}", file=sys.stderr)
        return 2
    print(f"make_toy_data: miniature ILSVRC at {a.root} ({time.perf_counter() - tic:.1f} s): DET in "
          f"{a.root}/Data/DET, CLS-LOC class folders in {a.root}/Data/CLS-LOC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
