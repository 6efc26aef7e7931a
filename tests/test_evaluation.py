"""Evaluation protocols on hand-worked cases, against a literal devkit loop, and against pycocotools."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os

import numpy as np
import pytest

from detector.data import COCODet, ImageRecord
from detector.evaluation import (
    ImageDetections,
    ap_11_points,
    ap_all_points,
    evaluate_coco,
    evaluate_ilsvrc,
    evaluate_voc,
    iou_xyxy,
    object_thresholds,
)

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
    dets = [det([[0, 0, 10, 10]], [0.9], [1]), det([[500, 500, 510, 510]], [0.8], [1]),
            det([[0, 0, 10, 10]], [0.7], [1])]
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
            for b, s, lab in zip(d.boxes, d.scores, d.labels):
                if lab == c:
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


# (objects, detections) an image: sparse scenes, and crowded ones where one class has many
# objects and long runs of detections, so the greedy walk goes many ranks deep
@pytest.mark.parametrize("seed,objects,detections", [(s, 6, 10) for s in range(5)] + [(5, 25, 80), (6, 40, 120)])
def test_ilsvrc_equals_a_literal_devkit_loop_on_random_scenes(seed, objects, detections):
    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(30):
        n = int(rng.integers(0, objects))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(4, 60, (n, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], 1))
        records.append(gt(boxes, rng.integers(1, 4, n), black=(1,) if i % 7 == 0 else ()))
        k = int(rng.integers(0, detections))
        src = boxes[rng.integers(0, max(n, 1), k)] if n else rng.uniform(0, 150, (k, 4))
        jitter = np.round(src + rng.normal(0, 4, (k, 4)))
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        dets.append(det(jitter, rng.random(k).round(2), rng.integers(1, 4, k)))  # rounded scores: ties
    ours = evaluate_ilsvrc(records, dets, 3)["ap"]
    ref = devkit_reference(records, dets, 3)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def installed(backend: str):
    """A backend as a test parameter, skipped where its library is not installed."""
    module = {"faster-coco-eval": "faster_coco_eval"}.get(backend, backend)
    return pytest.param(backend, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                                          reason=f"{backend} is not installed"))


BACKENDS = [installed(b) for b in ("hotcoco", "faster-coco-eval", "pycocotools")]


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside the checkout")
@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_metrics_equal_pycocotools_on_tiny_coco(backend):
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
    ours = evaluate_coco(ds.records, dets, ds.category_ids, ds.classes, coco_gt=ds.coco, backend=backend)
    results = [{"image_id": r.image_id, "category_id": ds.category_ids[int(lab) - 1],
                "bbox": [round(float(v), 3) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])], "score": float(s)}
               for r, d in zip(ds.records, dets) for b, s, lab in zip(d.boxes, d.scores, d.labels)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt_coco = COCO(ann)
        ev = COCOeval(gt_coco, gt_coco.loadRes(json.loads(json.dumps(results))), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert list(ours.values()) == pytest.approx(list(ev.stats), abs=1e-12)
    assert 0.3 < ours["AP"] < 1.0
    # built from our records instead (box areas, not mask areas): the same AP over all sizes
    rebuilt = evaluate_coco(ds.records, dets, ds.category_ids, ds.classes, backend=backend)
    for k in ("AP", "AP50", "AP75"):
        assert rebuilt[k] == pytest.approx(ours[k], abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_metrics_equal_pycocotools_on_a_generated_set(backend):
    """Objects of every COCO size, crowd regions (ignored objects), images without objects or
    without detections, scores with ties: the twelve numbers as pycocotools gives them."""
    rng = np.random.default_rng(3)
    records, dets = [], []
    for i in range(150):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.round(np.concatenate([xy, xy + rng.uniform(4, 200, (n, 2))], 1)).astype(np.float32)
        labels = rng.integers(1, 6, n)
        r = gt(boxes, labels)
        r.ignore = rng.random(n) < 0.1  # crowd regions
        r.image_id = 700 + 3 * i
        records.append(r)
        k = int(rng.integers(0, 12)) if i % 10 else 0
        src = rng.integers(0, max(n, 1), k)
        b = (boxes[src] if n else rng.uniform(0, 300, (k, 4))) + rng.normal(0, 4, (k, 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        lab = np.where((rng.random(k) < 0.8) & (n > 0), labels[src] if n else 0, rng.integers(1, 6, k))
        dets.append(det(b.astype(np.float32), rng.random(k).round(2), lab))
    cats, names = [2, 4, 6, 8, 10], ["a", "b", "c", "d", "e"]
    ours = evaluate_coco(records, dets, cats, names, backend=backend)
    ref = evaluate_coco(records, dets, cats, names, backend="pycocotools")
    assert list(ours.values()) == pytest.approx(list(ref.values()), abs=1e-6)
    assert 0.1 < ref["AP"] < 0.9 and ref["AP_small"] > 0 and ref["AP_large"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_coco_library_is_given_the_same_box_numbers(backend):
    """A float32 detection whose IoU with its object is 0.7 to within the rounding of its xywh to 3
    decimals: computed in float32 or float64, the match at IoU 0.70 comes and goes. Every library
    is given the boxes as float64 xywh rounded once (``coco_xywh``), so all agree."""
    r = gt([[380, 310, 388, 345]], [1])
    d = det(np.array([[379.2405, 313.4298, 387.03247, 343.58304]], np.float32), [0.5], [1])
    ours = evaluate_coco([r], [d], [1], ["a"], backend=backend)
    ref = evaluate_coco([r], [d], [1], ["a"], backend="pycocotools")
    assert ours == pytest.approx(ref, abs=1e-12) and ref["AR_100"] == pytest.approx(0.5)  # matched at .5-.7


def test_an_unknown_or_missing_coco_backend_is_a_named_error(monkeypatch):
    from core.config import ConfigError
    from detector.evaluation import coco

    with pytest.raises(ConfigError, match="choose one of auto, hotcoco"):
        coco.coco_backend("cocoapi")
    monkeypatch.setattr(coco.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="hotcoco: not installed; pip install hotcoco"):
        coco.coco_backend("hotcoco")
    assert coco.coco_backend("auto") == "pycocotools"  # the fallback


def test_misaligned_or_non_finite_detections_are_errors():
    with pytest.raises(ValueError, match="2 detection lists for 1 images"):
        evaluate_ilsvrc([gt([], [])], [ImageDetections.empty(), ImageDetections.empty()], 1)
    with pytest.raises(ValueError, match="image 0: a score is not finite"):
        evaluate_voc([gt([], [])], [det([[0, 0, 1, 1]], [np.nan], [1])], 1)


# -- results files ------------------------------------------------------------------------------------
def scene(seed: int = 0, n_images: int = 12, classes: int = 4):
    rng = np.random.default_rng(seed)
    records, dets = [], []
    for i in range(n_images):
        n = int(rng.integers(0, 4))
        xy = rng.integers(0, 200, (n, 2))
        boxes = np.concatenate([xy, xy + rng.integers(5, 80, (n, 2))], 1).astype(np.float32)
        r = gt(boxes, rng.integers(1, classes + 1, n), black=(2,) if i == 3 else ())
        r.index, r.image_id = 100 + 2 * i, 5000 + i  # list numbers need not be positions
        records.append(r)
        k = int(rng.integers(0, 6))
        src = boxes[rng.integers(0, max(n, 1), k)] if n else rng.integers(0, 200, (k, 4)).astype(np.float32)
        b = np.round(src + rng.normal(0, 3, (k, 4)), 2).astype(np.float32)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        dets.append(det(b, rng.random(k).round(6), rng.integers(1, classes + 1, k)))
    return records, dets


def test_scoring_a_results_file_equals_scoring_in_memory(tmp_path):
    from detector.evaluation import read_coco_results, read_ilsvrc_results, write_coco_results, write_ilsvrc_results

    records, dets = scene()
    det_ids = [11, 22, 33, 44]  # DET ids need not be 1..C
    write_ilsvrc_results(str(tmp_path / "sub.txt"), records, dets, det_ids)
    back = read_ilsvrc_results(str(tmp_path / "sub.txt"), records, det_ids)
    first = (tmp_path / "sub.txt").read_text().splitlines()[0].split()
    assert int(first[0]) >= 100 and int(first[1]) in det_ids  # image index and DET id, as the spec's format
    for a, b in zip(dets, back):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.006)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        assert a.labels.tolist() == b.labels.tolist()
    mem, disk = evaluate_ilsvrc(records, dets, 4), evaluate_ilsvrc(records, back, 4)
    np.testing.assert_allclose(mem["ap"], disk["ap"], atol=1e-12)
    cats = [1, 3, 5, 90]
    write_coco_results(str(tmp_path / "res.json"), records, dets, cats)
    coco = read_coco_results(str(tmp_path / "res.json"), records, cats)
    np.testing.assert_allclose(evaluate_voc(records, coco, 4)["ap"], evaluate_voc(records, dets, 4)["ap"], atol=1e-12)


def test_a_submission_read_as_one_array_equals_it_read_line_by_line(tmp_path, monkeypatch):
    from detector.evaluation import read_ilsvrc_results, results, write_ilsvrc_results

    records, dets = scene()
    det_ids = [44, 11, 33, 22]  # not sorted: the array reader maps them through a sort
    path = str(tmp_path / "sub.txt")
    write_ilsvrc_results(path, records, dets, det_ids)
    with open(path, "a") as f:
        f.write("\n\n")  # blank lines are no lines
    fast = read_ilsvrc_results(path, records, det_ids)
    monkeypatch.setattr(results, "_numeric_lines", lambda *a: None)
    slow = read_ilsvrc_results(path, records, det_ids)
    assert sum(len(d.scores) for d in fast) == sum(len(d.scores) for d in dets) > 0
    for a, b in zip(fast, slow):
        assert a.boxes.tolist() == b.boxes.tolist() and a.scores.tolist() == b.scores.tolist()
        assert a.labels.tolist() == b.labels.tolist() and a.boxes.dtype == b.boxes.dtype
    (tmp_path / "empty.txt").write_text("")
    assert all(len(d.scores) == 0 for d in read_ilsvrc_results(str(tmp_path / "empty.txt"), records, det_ids))


@pytest.mark.parametrize("line,match", [
    ("100 11 0.5 1 2 30", r"sub.txt:2: expected 7 fields"),
    ("100 11 high 1 2 30 40", r"sub.txt:2: not numbers"),
    ("7 11 0.5 1 2 30 40", r"sub.txt:2: image index 7 is not in the split"),
    ("100 12 0.5 1 2 30 40", r"sub.txt:2: class id 12 is not one of the 4 classes"),
    ("100 11 nan 1 2 30 40", r"sub.txt:2: score or box is not a finite number"),
    ("100 11 0.5 30 2 1 40", r"sub.txt:2: box has xmax < xmin"),
    ("100.5 11 0.5 1 2 30 40", r"sub.txt:2: not numbers"),
    ("# a comment", r"sub.txt:2: expected 7 fields"),
])
def test_bad_ilsvrc_results_lines_are_named(tmp_path, line, match):
    from detector.evaluation import ResultsError, read_ilsvrc_results

    records, _ = scene()
    path = tmp_path / "sub.txt"
    path.write_text("100 11 0.9 1 2 30 40\n" + line + "\n")
    with pytest.raises(ResultsError, match=match) as e:
        read_ilsvrc_results(str(path), records, [11, 22, 33, 44])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("entries,match", [
    ('[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]', r"entry 0: image_id 1 is not in"),
    ('[{"image_id": 5000, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.5}]', r"entry 0: category_id 2 is not"),
    ('[{"image_id": 5000, "category_id": 1, "bbox": [0, 0, 5], "score": 0.5}]', r"entry 0: bbox must be"),
    ('[{"image_id": 5000, "category_id": 1, "bbox": [0, 0, 5, 5], "score": NaN}]',
     r"entry 0: score or bbox is not finite"),
    ('[{"image_id": 5000, "category_id": 1, "bbox": [0, 0, 5, 5]}]', r"entry 0: needs image_id, category_id, bbox"),
    ('{"image_id": 5000}', r"a COCO results file is a JSON list"),
    ('[{"image_id": 5000,', r"not JSON \(line 1"),
])
def test_bad_coco_results_entries_are_named(tmp_path, entries, match):
    from detector.evaluation import ResultsError, read_coco_results

    records, _ = scene()
    path = tmp_path / "res.json"
    path.write_text(entries)
    with pytest.raises(ResultsError, match=match):
        read_coco_results(str(path), records, [1, 3, 5, 90])
