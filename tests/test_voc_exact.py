"""Pascal VOC metrics exactly as the devkit computes them: the eleven recall thresholds of VOC 2007,
scores at full precision through results files, ground truth scored as annotated, VOC's own
results files both ways, and a loop-for-loop transcription of ``VOCevaldet.m`` to compare with."""

from __future__ import annotations

import os

import numpy as np
import pytest

from detector.box_ops import xyxy_to_inclusive
from detector.data import ImageRecord, VOCDet, load_sample
from detector.evaluation import (
    ImageDetections,
    ResultsError,
    ap_11_points,
    evaluate_voc,
    read_ilsvrc_results,
    read_voc_results,
    write_ilsvrc_results,
    write_voc_results,
)


def record(image_id: str, boxes, labels, ignore=None, size=(1000, 1000)) -> ImageRecord:
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    ignore = np.zeros(len(labels), bool) if ignore is None else np.array(ignore, bool)
    return ImageRecord(f"{image_id}.jpg", image_id, size[0], size[1], boxes, np.array(labels, np.int64), ignore)


def test_voc07_thresholds_are_the_devkits_at_recall_exactly_03_06_07():
    # Ten objects; detections in score order: T T T F T T T F T F.
    #   recall     .1  .2  .3  .3   .4   .5   .6   .6   .7   .7
    #   precision   1   1   1  3/4  4/5  5/6  6/7  6/8  7/9  7/10
    # The devkit's thresholds (Octave's 0:0.1:1, NumPy's arange) put 0.3, 0.6 and 0.7 one ulp
    # above, and 3/10, 6/10, 7/10 land just below them, so those recalls do not count there:
    #   t = 0, .1, .2                         -> 1
    #   t = .3+, .4, .5 (best at recall >= .4) -> 6/7
    #   t = .6+ (recall .7 only)              -> 7/9
    #   t = .7+, .8, .9, 1                    -> 0
    # AP = (3 + 3 * 6/7 + 7/9) / 11. Counting recall >= t - 1e-12 instead gives (4 + 3 * 6/7 + 7/9) / 11
    # at t = .3 (1, not 6/7), and MATLAB's exact 0.6 and 0.7 give 6/7 and 7/9 there.
    flags = np.array([1, 1, 1, 0, 1, 1, 1, 0, 1, 0], bool)
    tp = np.cumsum(flags)
    precision, recall = tp / np.arange(1, 11), tp / 10
    expected = (3 + 3 * 6 / 7 + 7 / 9) / 11
    assert ap_11_points(precision, recall) == pytest.approx(expected, abs=1e-15)
    # and the same through evaluate_voc, one object per image
    records = [record(f"im{i}", [[0, 0, 10, 10]], [1]) for i in range(10)]
    dets = [ImageDetections.empty() for _ in records]
    hit = iter(range(10))
    for k, f in enumerate(flags):  # scores fall with k; a true positive takes the next object
        i = next(hit) if f else 0
        box = [0, 0, 10, 10] if f else [500, 500, 510, 510]
        dets[i] = ImageDetections(np.vstack([dets[i].boxes, [box]]).astype(np.float32),
                                  np.append(dets[i].scores, 1 - k / 20).astype(np.float32),
                                  np.append(dets[i].labels, 1))
    assert evaluate_voc(records, dets, 1, use_07_metric=True)["map"] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("fmt", ["voc", "ilsvrc"])
def test_scores_1e9_apart_keep_their_order_through_a_results_file(tmp_path, fmt):
    # One object; the lower score is the hit, the higher (by 1e-9) a miss, and the file lists the
    # hit first: as float32 they would tie and keep file order (AP 1); read at full precision the
    # miss comes first (AP 1/2).
    records = [record("a", [[0, 0, 10, 10]], [1]), record("b", [], [])]
    records[0].index, records[1].index = 1, 2
    dets = [ImageDetections(np.array([[0, 0, 10, 10]], np.float64), np.array([0.5]), np.array([1])),
            ImageDetections(np.array([[50, 50, 60, 60]], np.float64), np.array([0.500000001]), np.array([1]))]
    assert evaluate_voc(records, dets, 1)["map"] == pytest.approx(0.5)
    if fmt == "voc":
        write_voc_results(str(tmp_path), records, dets, ["thing"], "test")
        back = read_voc_results(str(tmp_path), records, ["thing"])
    else:
        write_ilsvrc_results(str(tmp_path / "sub.txt"), records, dets, [7])
        back = read_ilsvrc_results(str(tmp_path / "sub.txt"), records, [7])
    assert back[1].scores.dtype == np.float64 and back[1].scores[0] == 0.500000001
    assert evaluate_voc(records, back, 1)["map"] == pytest.approx(0.5)


def write_voc(root, name: str, size, objects) -> None:
    """A one-image VOC data set: JPEGImages, Annotations, ImageSets/Main/test.txt."""
    import cv2

    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    w, h = size
    cv2.imwrite(os.path.join(root, "JPEGImages", name + ".jpg"), np.zeros((h, w, 3), np.uint8))
    objs = "".join(f"<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
                   f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for c, (x1, y1, x2, y2) in objects)
    with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
        f.write(f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>")
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write(name + "\n")


def test_ground_truth_crossing_the_border_is_scored_as_annotated_and_trained_clipped(tmp_path):
    # 1-based inclusive x from -59 to 40 in a 60-wide image: 100 px annotated, 40 inside. A
    # detection of the annotated box matches it exactly; against the clipped box its IoU is 0.4.
    write_voc(tmp_path, "000001", (60, 50), [("dog", (-59, 5, 40, 30))])
    ds = VOCDet(str(tmp_path), "test")
    rec = ds.records[0]
    assert rec.boxes.tolist() == [[-60.0, 4.0, 40.0, 30.0]]
    assert any("crossing the image border" in k for k in ds.report.counts)
    dog = ds.classes.index("dog") + 1
    dets = [ImageDetections(rec.boxes.copy(), np.array([0.9], np.float32), np.array([dog]))]
    for metric in (False, True):  # (eleven times 1/11 sums to 1 + 2e-16, in the devkit too)
        ap = evaluate_voc(ds.records, dets, len(ds.classes), use_07_metric=metric)["ap"][dog - 1]
        assert ap == pytest.approx(1.0, abs=1e-15)
    assert load_sample(rec).boxes.tolist() == [[0.0, 4.0, 40.0, 30.0]]  # what training sees


def test_voc_results_files_round_trip_and_name_bad_lines(tmp_path):
    records = [record("000005", [[10, 10, 50, 60]], [1]), record("000007", [[0, 0, 20, 20]], [2])]
    dets = [ImageDetections(np.array([[10.25, 10, 50, 60.5]], np.float32), np.array([0.75], np.float32),
                            np.array([1])),
            ImageDetections(np.array([[1, 1, 20, 20], [5, 5, 9, 9]], np.float32), np.array([0.5, 0.25], np.float32),
                            np.array([2, 1]))]
    classes = ["aeroplane", "potted plant"]
    write_voc_results(str(tmp_path), records, dets, classes, "test")
    files = sorted(os.listdir(tmp_path))
    assert files == ["comp4_det_test_aeroplane.txt", "comp4_det_test_potted_plant.txt"]
    lines = (tmp_path / "comp4_det_test_aeroplane.txt").read_text().splitlines()
    assert lines[0] == "000005 0.75 11.25 11.00 50.00 60.50"  # 1-based inclusive, as the devkit reads
    back = read_voc_results(str(tmp_path / "comp4_det_test_*.txt"), records, classes)
    for a, b in zip(dets, back):
        order = np.lexsort((a.scores, a.labels)), np.lexsort((b.scores, b.labels))
        np.testing.assert_array_equal(a.boxes[order[0]], b.boxes[order[1]])
        np.testing.assert_array_equal(a.scores[order[0]], b.scores[order[1]])
    np.testing.assert_array_equal(evaluate_voc(records, back, 2)["ap"], evaluate_voc(records, dets, 2)["ap"])
    bad = {"000009 0.5 1 1 5 5": r"comp4_det_test_aeroplane.txt:2: image '000009' is not in the split",
           "000005 0.5 1 1 5": r"comp4_det_test_aeroplane.txt:2: expected 6 fields",
           "000005 x 1 1 5 5": r"comp4_det_test_aeroplane.txt:2: not numbers",
           "000005 0.5 9 1 5 5": r"comp4_det_test_aeroplane.txt:2: box has xmax < xmin"}
    for line, match in bad.items():
        (tmp_path / "comp4_det_test_aeroplane.txt").write_text(lines[0] + "\n" + line + "\n")
        with pytest.raises(ResultsError, match=match):
            read_voc_results(str(tmp_path), records, classes)
    (tmp_path / "comp4_det_test_aeroplane.txt").write_text(lines[0] + "\n")
    (tmp_path / "comp4_det_test_cat.txt").write_text("")
    with pytest.raises(ResultsError, match=r"comp4_det_test_cat.txt: not <comp>_det_<split>_<class>.txt"):
        read_voc_results(str(tmp_path), records, classes)


# -- VOCevaldet.m, loop for loop -------------------------------------------------------------------
def vocevaldet(gt: dict[str, list], lines: list[str], use_07: bool) -> float:
    """A transcription of the devkit's VOCevaldet.m (2007: the 11-point loop; 2012: VOCap) for one
    class. ``gt``: image id -> [(x1, y1, x2, y2 inclusive 1-based, difficult)]; ``lines``: the
    class's results file, ``<id> <confidence> <xmin> <ymin> <xmax> <ymax>``."""
    npos = sum(not d for objs in gt.values() for *_, d in objs)
    det = {i: [False] * len(objs) for i, objs in gt.items()}
    rows = [line.split() for line in lines if line.strip()]
    ids = [r[0] for r in rows]
    confidence = [float(r[1]) for r in rows]
    bbs = [[float(v) for v in r[2:]] for r in rows]
    si = sorted(range(len(rows)), key=lambda k: -confidence[k])  # MATLAB's sort is stable
    nd = len(rows)
    tp, fp = [0.0] * nd, [0.0] * nd
    for d in range(nd):
        i = ids[si[d]]
        bb = bbs[si[d]]
        ovmax, jmax = -np.inf, -1
        for j, (*bbgt, _) in enumerate(gt.get(i, [])):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        if ovmax >= 0.5:
            if not gt[i][jmax][4]:
                if not det[i][jmax]:
                    tp[d] = 1
                    det[i][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)  # NaN where only difficult detections came so far; max() skips them
    if use_07:
        ap = 0.0
        for t in np.arange(0, 1.1, 0.1):  # 0:0.1:1 as Octave computes it
            p = prec[rec >= t]
            p = p[~np.isnan(p)]
            ap = ap + (p.max() if p.size else 0.0) / 11
        return ap
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = np.fmax(mpre[k], mpre[k + 1])
    k = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[k] - mrec[k - 1]) * mpre[k]))


def boundary_scene(seed: int):
    """Classes with 5, 10 and 20 objects (recalls pass 3/5, 3/10, 6/10, 7/10 exactly), difficult
    objects, boxes crossing the border, and scores rounded so that many tie."""
    rng = np.random.default_rng(seed)
    records, dets = [], []
    wanted = {1: 5, 2: 10, 3: 20}
    objects = [(c, k) for c, n in wanted.items() for k in range(n)]
    rng.shuffle(objects)
    for i in range(0, len(objects), 3):
        labels = [c for c, _ in objects[i:i + 3]]
        xy = rng.integers(-20, 260, (len(labels), 2))
        boxes = np.concatenate([xy, xy + rng.integers(20, 90, (len(labels), 2))], 1)
        rec = record(f"{i:06d}", boxes, labels, ignore=rng.random(len(labels)) < 0.15, size=(300, 300))
        records.append(rec)
        k = int(rng.integers(1, 7))
        src = rng.integers(0, len(labels), k)
        b = boxes[src] + rng.normal(0, 8, (k, 4)).round(1)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 2)
        lab = np.where(rng.random(k) < 0.8, np.array(labels)[src], rng.integers(1, 4, k))
        dets.append(ImageDetections(b.astype(np.float64), rng.random(k).round(2), lab))
    return records, dets


@pytest.mark.parametrize("seed", range(4))
def test_voc_metrics_equal_a_transcription_of_vocevaldet(tmp_path, seed):
    records, dets = boundary_scene(seed)
    classes = ["a", "b", "c"]
    write_voc_results(str(tmp_path), records, dets, classes, "test")
    ours = {m: evaluate_voc(records, read_voc_results(str(tmp_path), records, classes), 3, use_07_metric=m)["ap"]
            for m in (True, False)}
    for c, name in enumerate(classes, 1):
        gt = {}
        for r in records:
            inc = xyxy_to_inclusive(r.boxes, origin=1)
            gt[r.image_id] = [(*inc[j].tolist(), bool(r.ignore[j])) for j in np.flatnonzero(r.labels == c)]
        lines = (tmp_path / f"comp4_det_test_{name}.txt").read_text().splitlines()
        for use_07 in (True, False):
            assert abs(ours[use_07][c - 1] - vocevaldet(gt, lines, use_07)) <= 1e-12, (name, use_07)
