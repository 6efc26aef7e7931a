"""Draw samples after augmentation, boxes and class names on them, to check a data set by eye.

    python tools/browse_dataset.py CONFIG [--n 16] [--split train|val] [--out DIR] [data.key=value ...]

CONFIG is a detection config; only its ``data`` section is read.
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backbone.config import ConfigError, load_config  # noqa: E402
from backbone.data import DataError  # noqa: E402
from detector.data.build import DetDataConfig, build_detection_data  # noqa: E402
from detector.data.dataset import Skipped  # noqa: E402
from detector.visualize import draw_boxes  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="data.key=value")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--split", choices=("train", "val"), default="train")
    p.add_argument("--out", default="work_dirs/browse")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_intermixed_args(argv)
    try:
        cfg = load_config(DetDataConfig, a.config, a.overrides, section="data")
        dataset, index = build_detection_data(cfg, train=a.split == "train", seed=a.seed)
    except (ConfigError, DataError) as e:
        print(f"browse_dataset: {e}", file=sys.stderr)
        return 2
    if index.report:
        print(index.report.summary("reading the annotations"), file=sys.stderr)
    os.makedirs(a.out, exist_ok=True)
    written = 0
    for i in np.random.default_rng(a.seed).permutation(len(dataset))[: a.n].tolist():
        s = dataset[i]
        if isinstance(s, Skipped):
            print(f"browse_dataset: skipped: {s.message}", file=sys.stderr)
            continue
        path = os.path.join(a.out, f"{a.split}_{i:06d}.png")
        cv2.imwrite(path, draw_boxes(s.image, s.boxes, s.labels, index.class_names, ignore=s.ignore))
        written += 1
    print(f"browse_dataset: {written} image(s) with boxes in {a.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
