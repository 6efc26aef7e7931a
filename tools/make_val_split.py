"""Split ILSVRC DET val into class-balanced halves val1 / val2 (R-CNN's practice: train on train +
val1, evaluate on val2), written as ImageSets/DET/val1.txt and val2.txt beside val.txt.

    python tools/make_val_split.py ROOT [--seed 0] [--synsets map_det.txt]
"""

from __future__ import annotations

import argparse
import os
import sys

from core.cli import run_guarded
from detector.data.build import DetDataConfig, ilsvrc_files
from detector.data.ilsvrc import ILSVRCDet
from detector.data.split import balanced_halves, write_split


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="the folder holding Data/, Annotations/ and ImageSets/")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synsets", default=None,
                   help="wnid list (default: map_det.txt in ROOT/devkit/data or ROOT, else the 200 DET synsets)")
    a = p.parse_args(argv)
    return run_guarded("make_val_split", lambda: split(a.root, a.seed, a.synsets))


def split(root: str, seed: int, synsets: str | None) -> int:
    table, _ = ilsvrc_files(DetDataConfig(root=root, synsets=synsets), "train")  # the synsets; no blacklist needed
    val = ILSVRCDet(root, "val", synsets=table)
    if val.report:
        print(val.report.summary("reading val"), file=sys.stderr)
    one, two = balanced_halves(val.records, seed)
    sets = os.path.join(root, "ImageSets", "DET")
    write_split(os.path.join(sets, "val1.txt"), one)
    write_split(os.path.join(sets, "val2.txt"), two)
    print(f"make_val_split: {len(one)} images in {sets}/val1.txt, {len(two)} in {sets}/val2.txt "
          f"({sum(len(r.labels) for r in one)} and {sum(len(r.labels) for r in two)} objects)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
