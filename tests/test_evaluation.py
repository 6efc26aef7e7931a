"""Evaluation protocols on hand-worked cases, against a literal devkit loop, and against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest

from detector.data import COCODet, ImageRecord
from detector.evaluation import (ImageDetections, ap_11_points, ap_all_points, evaluate_coco, evaluate_ilsvrc,
                                 evaluate_voc, iou_xyxy, object_thresholds)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def gt(boxes, labels, ignore=None, black=()) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    labels = np.array(labels, np.int64)
    ignore = np.zeros(len(labels), bool) if ignore is None else np.array(ignore, bool)
    return ImageRecord("x.jpg", "x", 1000, 1000, boxes, labels, ignore, ignore_classes=tuple(black))


def det(boxes, scores, labels) -> ImageDetections:
    return ImageDetections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                           np.array(labels, np.int64))


def test_object_thresholds():
    t = object_thresholds(np.array([[0, 0, 10, 10], [0, 0, 40, 40], [0, 0, 20, 5]]))
    assert t[0] == pytest.approx(100 / 400) and t[1] == 0.5 and t[2] == pytest.approx(100 / (30 * 15))


def test_iou_uses_inclusive_pixels():
    # inclusive (0,0)-(9,9) and (5,0)-(14,9): 5x10 of 10x10 each -> 50 / 150
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10]])
    assert iou_xyxy(a, b)[0, 0] == pytest.approx(50 / 150)


def test_small_object_matched_below_iou_half():
    records = [gt([[0, 0, 10, 10]], [1])]  # a 10x10 object: threshold 0.25
    dets = [det([[3, 3, 13, 13]], [0.9], [1])]  # IoU 49/151 = 0.32
    assert iou_xyxy(dets[0].boxes, records[0].boxes)[0, 0] == pytest.approx(49 / 151)
    assert evaluate_ilsvrc(records, dets, 1)["map"] == 1.0
    assert evaluate_voc(records, dets, 1)["map"] == 0.0


def test_duplicate_matches_a_second_object_under_ilsvrc_but_not_voc():
    records = [gt([[0, 0, 100, 100], [10, 0, 110, 100]], [1, 1])]
    dets = [det([[0, 0, 100, 100], [2, 0, 102, 100]], [0.9, 0.8], [1, 1])]
    ov = iou_xyxy(dets[0].boxes, records[0].boxes)
    assert ov[1, 0] > ov[1, 1] >= 0.5  # the second detection overlaps the taken object most
    assert evaluate_ilsvrc(records, dets, 1)["map"] == 1.0  # it takes the other object
    voc = evaluate_voc(records, dets, 1)
    assert voc["map"] == pytest.approx(0.5)  # [TP, FP] of 2 objects
    assert evaluate_voc(records, dets, 1, use_07_metric=True)["map"] == pytest.approx(6 / 11)


def test_blacklisted_pairs_are_left_out():
    records = [gt([[0, 0, 50, 50]], [1], black=(1,)), gt([[0, 0, 50, 50]], [1])]
    dets = [det([[200, 200, 250, 250]], [0.99], [1]),  # a false positive, but blacklisted: dropped
            det([[0, 0, 50, 50]], [0.5], [1])]
    res = evaluate_ilsvrc(records, dets, 1)
    assert res["npos"].tolist() == [1] and res["map"] == 1.0
    unlisted = [gt([[0, 0, 50, 50]], [1]), records[1]]
    res = evaluate_ilsvrc(unlisted, dets, 1)
    assert res["npos"].tolist() == [2] and res["map"] < 0.5


def test_difficult_objects_neither_count_nor_make_false_positives():
    records = [gt([[0, 0, 50, 50], [100, 100, 150, 150]], [1, 1], ignore=[True, False])]
    dets = [det([[0, 0, 50, 50], [100, 100, 150, 150]], [0.9, 0.8], [1, 1])]
    res = evaluate_voc(records, dets, 1)
    assert res["npos"].tolist() == [1] and res["map"] == 1.0
    hard = [gt([[0, 0, 50, 50], [100, 100, 150, 150]], [1, 1], ignore=[False, False])]
    assert evaluate_voc(hard, [det([[100, 100, 150, 150]], [0.8], [1])], 1)["map"] == pytest.approx(0.5)


def test_voc07_against_voc10_on_a_hand_worked_curve():
    records = [gt([[0, 0, 10, 10]], [1]) for _ in range(3)]
    dets = [det([[0, 0, 10, 10]], [0.9], [1]), det([[500, 500, 510, 510]], [0.8], [1]), det([[0, 0, 10, 10]], [0.7], [1])]
    # TP, FP, TP of 3: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3
    assert evaluate_voc(records, dets, 1)["map"] == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)
    assert evaluate_voc(records, dets, 1, use_07_metric=True)["map"] == pytest.approx((4 + 3 * 2 / 3) / 11)
    p, r = np.array([1, 0.5, 2 / 3]), np.array([1 / 3, 1 / 3, 2 / 3])
    assert ap_all_points(p, r) == pytest.approx(5 / 9) and ap_11_points(p, r) == pytest.approx(6 / 11)


def test_classes_without_objects_are_left_out_of_the_mean():
    records = [gt([[0, 0, 10, 10]], [2])]
    res = evaluate_ilsvrc(records, [det([[0, 0, 10, 10]], [0.9], [2])], 3)
    assert np.isnan(res["ap"][0]) and np.isnan(res["ap"][2]) and res["map"] == 1.0


def devkit_reference(records, dets, num_classes):
    """A literal transcription of eval_detection.m's loops, for comparison."""
    aps = []
    for c in range(1, num_classes + 1):
        items = []
        npos = 0
        for i, (r, d) in enumerate(zip(records, dets)):
            if c in r.ignore_classes:
                continue
            npos += int((r.labels == c).sum())
            for b, s, l in zip(d.boxes, d.scores, d.labels):
                if l == c:
                    items.append((-float(s), i, b))
        items.sort(key=lambda t: t[0])  # stable, like MATLAB's sort
        taken = {i: [False] * len(r.labels) for i, r in enumerate(records)}
        tp = []
        for _, i, b in items:
            r = records[i]
            best, bestg = -1.0, -1
            for g, (gb, gl) in enumerate(zip(r.boxes, r.labels)):
                if gl != c or taken[i][g]:
                    continue
                bw, bh = gb[2] - gb[0], gb[3] - gb[1]
                thr = min(0.5, bw * bh / ((bw + 10) * (bh + 10)))
                iw = min(b[2], gb[2]) - max(b[0], gb[0])
                ih = min(b[3], gb[3]) - max(b[1], gb[1])
                if iw <= 0 or ih <= 0:
                    continue
                ov = iw * ih / ((b[2] - b[0]) * (b[3] - b[1]) + bw * bh - iw * ih)
                if ov >= thr and ov > best:
                    best, bestg = ov, g
            if bestg >= 0:
                taken[i][bestg] = True
            tp.append(bestg >= 0)
        if npos == 0:
            aps.append(np.nan)
            continue
        tp = np.array(tp, bool)
        ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
        aps.append(ap_all_points(ctp / np.maximum(ctp + cfp, 1e-12), ctp / npos))
    return np.array(aps)


@pytest.mark.parametrize("seed", range(5))
def test_ilsvrc_equals_a_literal_devkit_loop_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(30):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(4, 60, (n, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], 1))
        records.append(gt(boxes, rng.integers(1, 4, n), black=(1,) if i % 7 == 0 else ()))
        k = int(rng.integers(0, 10))
        src = boxes[rng.integers(0, max(n, 1), k)] if n else rng.uniform(0, 150, (k, 4))
        jitter = np.round(src + rng.normal(0, 4, (k, 4)))
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        dets.append(det(jitter, rng.random(k).round(2), rng.integers(1, 4, k)))  # rounded scores: ties
    ours = evaluate_ilsvrc(records, dets, 3)["ap"]
    ref = devkit_reference(records, dets, 3)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside the checkout")
def test_coco_metrics_equal_pycocotools_on_tiny_coco():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann = os.path.join(SHARED, "tiny_coco", "annotations", "instances_val2017.json")
    ds = COCODet(ann, os.path.join(SHARED, "tiny_coco", "val2017"))
    rng = np.random.default_rng(0)
    dets = []
    for r in ds.records:  # perturbed ground truth as the detections, with random scores
        keep = ~r.ignore
        boxes = r.boxes[keep] + rng.normal(0, 3, (int(keep.sum()), 4)).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        dets.append(ImageDetections(boxes, rng.random(len(boxes)).astype(np.float32), r.labels[keep]))
    ours = evaluate_coco(ds.records, dets, ds.category_ids, ds.classes, coco_gt=ds.coco)
    results = [{"image_id": r.image_id, "category_id": ds.category_ids[int(l) - 1],
                "bbox": [round(float(v), 3) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])], "score": float(s)}
               for r, d in zip(ds.records, dets) for b, s, l in zip(d.boxes, d.scores, d.labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco = COCO(ann)
        ev = COCOeval(gt_coco, gt_coco.loadRes(json.loads(json.dumps(results))), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert list(ours.values()) == pytest.approx(list(ev.stats), abs=1e-12)
    assert 0.3 < ours["AP"] < 1.0
    # built from our records instead (box areas, not mask areas): the same AP over all sizes
    rebuilt = evaluate_coco(ds.records, dets, ds.category_ids, ds.classes)
    for k in ("AP", "AP50", "AP75"):
        assert rebuilt[k] == pytest.approx(ours[k], abs=1e-12)


def test_misaligned_or_non_finite_detections_are_errors():
    with pytest.raises(ValueError, match="2 detection lists for 1 images"):
        evaluate_ilsvrc([gt([], [])], [ImageDetections.empty(), ImageDetections.empty()], 1)
    with pytest.raises(ValueError, match="image 0: a score is not finite"):
        evaluate_voc([gt([], [])], [det([[0, 0, 1, 1]], [np.nan], [1])], 1)
