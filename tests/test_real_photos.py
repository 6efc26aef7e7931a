"""The detector learns real photos: four tiny-COCO photos (``../shared/data``), each head from
scratch through ``train_one_epoch`` with the default (fused) AdamW; the loss falls and the
detector finds the photos' objects again (VOC mAP@0.5 on its own training photos).

The short version of ``python tools/benchmark.py learning`` (tools/benchmarks/learning.py), which
runs the long one over several seeds; the marks below sit under the lowest of five seeds at this
length, with a margin (docs/detector.md, "Real photos")."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from benchmarks.learning import TINY_COCO, four_photos, learn  # noqa: E402


@pytest.mark.skipif(not os.path.isdir(TINY_COCO), reason="needs ../shared/data/tiny_coco")
# FPN at 40 steps, five seeds: mAP 0.xx-0.xx, loss ratio <= 0.xx; C4 (which runs inception 5a/5b
# on every region and learns more slowly) at 30 steps: mAP 0.xx-0.xx, ratio <= 0.xx
@pytest.mark.parametrize("head, steps, loss_ratio, min_map", [("fpn", 40, 0.6, 0.3), ("c4", 30, 0.9, 0.05)])
def test_each_head_learns_four_real_photos_from_scratch(head, steps, loss_ratio, min_map):
    batch, records = four_photos()
    assert len(records) == 4 and sum(len(r.boxes) for r in records) >= 8
    got = learn(head, steps, seed=0, batch=batch, records=records)
    print(f"{head}: loss {got['first']:.3f} -> {got['last']:.3f}, VOC mAP@0.5 on its photos {got['map']:.3f}")
    assert got["last"] < loss_ratio * got["first"], got
    assert got["map"] >= min_map, got
