"""Draw samples after augmentation, boxes and class names on them, to check a data set by eye.

    python tools/browse_dataset.py CONFIG [--n 16] [--split train|val] [--out DIR] [data.key=value ...]

CONFIG is a detection config; only its ``data`` section is read.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from core.atomic import write_png_atomic
from core.cli import run_guarded
from core.config import load_config
from core.data_report import publish, report_path
from detector.data.build import DetDataConfig, build_detection_data
from detector.data.dataset import UNREADABLE, Skipped
from detector.data.device import Encoded, decode_to
from detector.visualize import draw_boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="data.key=value")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--split", choices=("train", "val"), default="train")
    p.add_argument("--out", default="work_dirs/browse")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_intermixed_args(argv)
    return run_guarded("browse_dataset", lambda: browse(a.config, a.overrides, a.split, a.n, a.out, a.seed))


def browse(config: str, overrides: list[str], split: str, n: int, out: str, seed: int) -> int:
    cfg = load_config(DetDataConfig, config, overrides, section="data")
    dataset, index = build_detection_data(cfg, train=split == "train", seed=seed)
    report = index.report  # what reading the annotations skipped or fixed, then the images drawn
    written = 0
    for i in np.random.default_rng(seed).permutation(len(dataset))[:n].tolist():
        s = dataset[i]
        if isinstance(s, Skipped):
            report.add(UNREADABLE, "image skipped", s.path, s.detail)
            continue
        image = s.image
        if isinstance(image, Encoded):  # data.decode=device: the pixels that path makes, made here
            image = (decode_to([image], torch.device("cpu"))[0] * 255).round().byte().permute(1, 2, 0).numpy()
        write_png_atomic(os.path.join(out, f"{split}_{i:06d}.png"),
                         draw_boxes(image, s.boxes, s.labels, index.class_names, ignore=s.ignore))
        written += 1
    publish(report, f"browse_dataset: {split}", report_path(out, f"read_{split}"),
            lambda t: print(t, file=sys.stderr))
    print(f"browse_dataset: {written} image(s) with boxes in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
