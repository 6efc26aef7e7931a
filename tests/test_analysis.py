"""detector/analysis.py: each detection's error type, the confusion matrix and each part of the
error breakdown on hand-worked scenes; tools/analyze.py end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from detector.analysis import TYPES, confusion_matrix, detection_types, error_breakdown
from detector.data import ImageRecord
from detector.evaluation import ImageDetections


def record(boxes, labels) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return ImageRecord("x.jpg", "x", 400, 400, boxes, np.array(labels, np.int64), np.zeros(len(labels), bool))


def dets(boxes, scores, labels) -> ImageDetections:
    return ImageDetections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                           np.array(labels, np.int64))


def test_each_detection_gets_its_type():
    r = record([[0, 0, 100, 100], [200, 200, 300, 300]], [1, 2])
    d = dets([[0, 0, 100, 100],      # tp (class 1)
              [2, 2, 100, 100],      # dupe of it
              [200, 200, 300, 302],  # cls: class 1 on the class-2 object
              [0, 0, 40, 100],       # loc: class 1, IoU 0.4
              [200, 200, 240, 300],  # both: class 3 at IoU 0.4 with the class-2 object
              [350, 350, 390, 390]],  # bkg
             [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 1, 1, 3, 1])
    kind, target = detection_types(r, d)
    assert [TYPES[k] for k in kind] == ["tp", "dupe", "cls", "loc", "both", "bkg"]
    assert target.tolist() == [0, 0, 1, 0, 1, -1]


def test_the_confusion_matrix_counts_objects_against_detections():
    r = record([[0, 0, 100, 100], [200, 200, 300, 300], [100, 300, 150, 350]], [1, 2, 2])
    d = dets([[0, 0, 100, 100], [200, 200, 300, 300], [350, 0, 390, 40], [0, 0, 100, 100]],
             [0.9, 0.8, 0.7, 0.1], [1, 1, 2, 2])  # the last is under min_score
    m = confusion_matrix([r], [d], 2, min_score=0.3)
    assert m.tolist() == [[0, 0, 1],   # a class-2 detection on nothing
                          [0, 1, 0],   # the class-1 object found as class 1
                          [1, 1, 0]]   # a class-2 object called class 1, another missed


def breakdown_scene() -> tuple[list[ImageRecord], list[ImageDetections]]:
    """Four images, one error of each type, worked by hand in the test below. Class 1: objects
    G1 (image A), G3 (B), G4 (C), G5 (D); class 2: G2 (A)."""
    records = [record([[0, 0, 100, 100], [200, 200, 300, 300]], [1, 2]),  # A: G1, G2
               record([[0, 0, 50, 50]], [1]),  # B: G3
               record([[0, 0, 50, 50]], [1]),  # C: G4
               record([[0, 0, 50, 50]], [1])]  # D: G5, which nothing finds
    detections = [dets([[0, 0, 100, 100],      # 0.90 class 1 on G1: tp
                        [2, 2, 100, 100],      # 0.85 class 1 on G1 again: dupe
                        [350, 350, 390, 390],  # 0.80 class 1 on nothing: bkg
                        [200, 200, 300, 300]],  # 0.70 class 1 on the class-2 G2: cls
                       [0.9, 0.85, 0.8, 0.7], [1, 1, 1, 1]),
                  dets([[0, 0, 50, 20]], [0.6], [1]),  # class 1 at IoU 0.4 with G3: loc
                  dets([[0, 0, 50, 20]], [0.5], [2]),  # class 2 at IoU 0.4 with the class-1 G4: both
                  dets([], [], [])]
    return records, detections


@pytest.mark.parametrize("protocol", ["voc", "ilsvrc"])  # both all-point AP; no object here is small
def test_each_part_of_the_breakdown_is_the_ap_its_fix_adds(protocol):
    """Worked by hand (all-point AP, precision made monotone), fixing in the order cls, loc, both,
    dupe, bkg. Class 2 (one object) scores its class-2 box d6 only at first, a false positive:
    AP 0; once cls gives it G2's detection, 1. Class 1 (4 objects) ranks, by score:
      as given:   TP FP FP FP FP               -> recall 1/4 at precision 1:            AP 0.25
      cls fixed:  TP FP FP FP (d2 left)        -> the same:                              0.25
      loc fixed:  TP FP FP TP                  -> 1/4 at 1, 2/4 at 2/4:                  0.375
      both fixed: TP FP FP TP TP               -> 1/4 at 1, 3/4 at 3/5:                  0.55
      dupe fixed: TP FP TP TP                  -> 1/4 at 1, 3/4 at 3/4:                  0.625
      bkg fixed:  TP TP TP                     -> 3/4 at 1 (G5 is never found):          0.75
    mAP (the mean of the two classes, in points): 12.5, 62.5, 68.75, 77.5, 81.25, 87.5."""
    records, detections = breakdown_scene()
    kinds = [TYPES[k] for r, d in zip(records, detections) for k in detection_types(r, d)[0]]
    assert kinds == ["tp", "dupe", "bkg", "cls", "loc", "both"]
    parts = error_breakdown(records, detections, 2, protocol)
    expected = {"map": 12.5, "cls": 50.0, "loc": 6.25, "both": 8.75, "dupe": 3.75, "bkg": 6.25, "miss": 12.5}
    assert parts == pytest.approx(expected, abs=1e-9)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANALYZE = os.path.join(ROOT, "tools", "analyze.py")


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ANALYZE, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_errors_writes_the_breakdown_the_confusion_matrix_and_the_best_and_worst_images(tmp_path):
    from detector.data.ilsvrc import ILSVRCDet
    from detector.data.toy import make_toy_ilsvrc
    from detector.evaluation import write_ilsvrc_results

    root = make_toy_ilsvrc(str(tmp_path / "ilsvrc"), n_train=2, n_val=12, n_negative=0, cls_per_class=1)
    val = ILSVRCDet(root, "val", synsets=os.path.join(root, "map_det.txt"), blacklist=None)
    rng = np.random.default_rng(0)
    ds = []
    for r in val.records:  # each object found, some shifted, some relabelled, plus one box on nothing
        b = r.boxes + rng.normal(0, 3, r.boxes.shape).astype(np.float32)
        lab = np.where(rng.random(len(r.labels)) < 0.8, r.labels, 1 + (r.labels % 10))
        ds.append(dets(np.vstack([b, [[1, 1, 9, 9]]]), rng.random(len(b) + 1) * 0.6 + 0.4, np.r_[lab, 3]))
    results = tmp_path / "set" / "ilsvrc.txt"
    write_ilsvrc_results(str(results), val.records, ds, val.det_ids)
    common = ["configs/toy_det.yaml", f"data.root={root}", "data.toy=false", "data.blacklist=none"]
    out = run(["errors", *common, "--detections", str(results), "--images", "2"])
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "set" / "analysis"
    parts = json.load(open(folder / "errors.json"))
    # the tool reads the results file back and breaks down what the in-memory detections give
    # (the file keeps boxes to 0.01 px and scores to 1e-6: the same matches and ranks)
    direct = error_breakdown(val.records, ds, 10, "voc")
    assert parts["protocol"] == "voc" and {k: parts[k] for k in direct} == pytest.approx(direct, abs=1e-6)
    assert parts["cls"] > 0  # the relabelled fifth of the objects
    rows = list(csv.reader(open(folder / "confusion.csv")))
    assert rows[0][:2] == ["object/detection", "none"] and len(rows) == 12
    counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert counts[1:].sum() == sum(len(r.labels) for r in val.records)  # every object once
    # the class-3 box on nothing in each image (with any shifted box that lost its object)
    assert counts[0, 3] >= len(val.records) and counts[0, 0] == 0
    assert len(list(folder.glob("best_*.png"))) == 2 and len(list(folder.glob("worst_*.png"))) == 2
    assert (folder / "confusion.png").stat().st_size > 1000
    missing = run(["errors", *common, "--detections", str(tmp_path / "nope.txt")])
    assert missing.returncode == 2 and "nope.txt" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_curves_plots_detector_and_pretraining_logs(tmp_path):
    det_log, pre_log = tmp_path / "det" / "log.jsonl", tmp_path / "pre" / "log.jsonl"
    for path, rows in ((det_log, [{"kind": "train", "global_step": s, "loss": 2 / s, "loss_classifier": 1 / s,
                                   "lr": 0.01} for s in range(1, 20)] + [{"kind": "eval", "epoch": 1, "map": 0.3}]),
                       (pre_log, [{"kind": "train", "global_step": s, "loss": 5 / s, "lr": 0.1} for s in range(1, 9)]
                        + [{"kind": "eval", "epoch": 1, "main_top1": 40.0, "images": 200}])):
        path.parent.mkdir()
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run(["curves", str(det_log), str(pre_log), "--out", str(tmp_path / "curves.png")])
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "curves.png").stat().st_size > 5000
