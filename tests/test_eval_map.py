"""tools/eval_map.py end to end on a tiny miniature ILSVRC: members, the ensemble methods, the
cache, results files scored without a model, and the errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from detector.data.toy import make_toy_ilsvrc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "train_det.py")
EVAL = os.path.join(ROOT, "tools", "eval_map.py")


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": ROOT})


def common(root: str, work: str) -> list[str]:
    return ["configs/toy_det.yaml", f"data.root={root}", "data.toy=false", f"work_dir={work}", "model.weights=null",
            "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=160", "progress=false",
            "model.rpn_post_nms_top_n_test=16", "model.box_score_thresh=0.0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two briefly trained members of the miniature (scores are low; the tests compare them)."""
    base = tmp_path_factory.mktemp("eval")
    root = make_toy_ilsvrc(str(base / "ilsvrc"), n_train=8, n_val=6, n_negative=0, cls_per_class=1)
    work = str(base / "work")
    for k in range(2):
        out = run([TRAIN, *common(root, work), f"model_index={k}", "batch_size=2", "max_steps=4", "eval_every=100",
                   "model.rpn_post_nms_top_n_train=32", "model.box_batch_size_per_image=16"])
        assert out.returncode == 0, out.stderr[-2000:]
    return root, work


def report(out: subprocess.CompletedProcess, folder: str) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(folder, "report.json")) as f:
        return json.load(f)


def test_members_are_scored_with_tables_files_and_plots_and_then_come_from_the_cache(trained, tmp_path):
    root, work = trained
    args = [EVAL, *common(root, work), "--metric", "all", "--out", str(tmp_path)]
    first = run(args)
    rep = report(first, str(tmp_path))
    assert set(rep["results"]) == {"model_0", "model_1"}
    for name in ("model_0", "model_1"):
        files = set(os.listdir(tmp_path / name))
        assert {"detections.npz", "ilsvrc.txt", "coco.json", "voc", "pr.png"} <= files
        assert len(os.listdir(tmp_path / name / "voc")) == 10  # comp4_det_val_<class>.txt, one per class
        r = rep["results"][name]
        assert 0 <= r["ilsvrc"]["map"] <= 1 and len(r["ilsvrc"]["ap"]) == 10 and "AP50" in r["coco"]["stats"]
    assert "per-class AP (%), ilsvrc" in first.stdout and "circle" in first.stdout and "mean" in first.stdout
    assert "model_0" in first.stdout.split("mAP (%) on")[1]
    again = run(args)
    assert again.stderr.count("cached detections") == 2
    assert report(again, str(tmp_path))["results"] == rep["results"]


def test_a_results_file_scores_as_the_detections_in_memory(trained, tmp_path):
    root, work = trained
    rep = report(run([EVAL, *common(root, work), "--checkpoints", os.path.join(work, "googlenet_toy_det", "model_0",
                                                                                   "model_final.pth"),
                      "--metric", "all", "--out", str(tmp_path / "a")]), str(tmp_path / "a"))
    mem = rep["results"]["model_0"]
    coco_default = None
    for fmt in ("ilsvrc.txt", "coco.json", "voc"):  # voc: a folder of per-class files
        copy = shutil.copytree if fmt == "voc" else shutil.copy
        copy(tmp_path / "a" / "model_0" / fmt, tmp_path / f"sub_{fmt}")
        rep2 = report(run([EVAL, *common(root, work), "--detections", str(tmp_path / f"sub_{fmt}"), "--metric", "all",
                           "--out", str(tmp_path / fmt)]), str(tmp_path / fmt))
        got = rep2["results"][f"sub_{fmt.split('.')[0]}"]
        coco_default = got["coco"] if fmt == "coco.json" else coco_default
        for m in ("ilsvrc", "voc07", "voc"):
            np.testing.assert_allclose(got[m]["map"], mem[m]["map"], atol=2e-6, err_msg=f"{fmt} {m}")
        np.testing.assert_allclose(got["coco"]["map"], mem["coco"]["map"], atol=2e-5)
    # the COCO numbers from pycocotools itself: the default library's (hotcoco) to the digit
    ref = report(run([EVAL, *common(root, work), "--detections", str(tmp_path / "sub_coco.json"), "--metric", "coco",
                      "--coco-backend", "pycocotools", "--out", str(tmp_path / "ref")]), str(tmp_path / "ref"))
    assert ref["results"]["sub_coco"]["coco"]["stats"] == pytest.approx(coco_default["stats"], abs=1e-12)


def test_a_bad_results_file_is_one_line_naming_the_line(trained, tmp_path):
    root, work = trained
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 0.5 1 2 30 40\n1 99 0.5 1 2 30 40\n")
    out = run([EVAL, *common(root, work), "--detections", str(bad), "--out", str(tmp_path)])
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "bad.txt:2" in out.stderr and "class id 99" in out.stderr


def _detections(folder) -> list[tuple]:
    z = np.load(os.path.join(folder, "detections.npz"))
    image = np.repeat(np.arange(len(z["counts"])), z["counts"])
    rows = zip(image.tolist(), z["labels"].tolist(), np.round(z["scores"], 5).tolist(),
               np.round(z["boxes"], 2).tolist())
    return sorted((i, lab, s, tuple(b)) for i, lab, s, b in rows)


def test_an_ensemble_of_two_identical_members_equals_the_single_model(trained, tmp_path):
    root, work = trained
    member = os.path.join(work, "googlenet_toy_det", "model_1", "model_final.pth")
    twin = tmp_path / "twin.pth"
    shutil.copy(member, twin)
    for method in ("shared", "nms", "wbf"):  # one --out: the member's detections are cached after the first
        rep = report(run([EVAL, *common(root, work), "--checkpoints", member, str(twin), "--ensemble", "2", "--method",
                          method, "--metric", "voc", "--out", str(tmp_path)]), str(tmp_path))
        single = _detections(tmp_path / "model_1")
        assert len(single) > 20  # something to compare (box_score_thresh=0: the untrained heads detect plenty)
        ens = _detections(tmp_path / f"ensemble2_{method}")
        assert len(ens) == len(single), method
        for a, b in zip(single, ens):
            assert a[:2] == b[:2] and a[2] == pytest.approx(b[2], abs=2e-5), method
            np.testing.assert_allclose(a[3], b[3], atol=0.02, err_msg=method)
        assert rep["results"][f"ensemble2_{method}"]["voc"]["map"] == pytest.approx(
            rep["results"]["model_1"]["voc"]["map"], abs=1e-6)


def test_shared_ensemble_scores_members_and_ensemble_in_one_pass(trained, tmp_path):
    root, work = trained
    rep = report(run([EVAL, *common(root, work), "--ensemble", "2", "--out", str(tmp_path)]), str(tmp_path))
    assert list(rep["results"]) == ["model_0", "model_1", "ensemble2_shared"]
    # the members' detections from the ensemble's pass equal their own runs
    alone = report(run([EVAL, *common(root, work), "--out", str(tmp_path / "alone")]), str(tmp_path / "alone"))
    for k in ("model_0", "model_1"):
        assert rep["results"][k]["ilsvrc"]["map"] == pytest.approx(alone["results"][k]["ilsvrc"]["map"], abs=1e-6)


def test_draw_score_sets_what_is_drawn_and_counted(trained, tmp_path):
    root, work = trained
    drawn = {}
    for score in (0.0, 1.01):  # the untrained heads detect plenty at 0; no score reaches 1.01
        rep = report(run([EVAL, *common(root, work), "--draw", "3", "--draw-score", str(score), "--out",
                          str(tmp_path)]), str(tmp_path))
        drawn[score] = rep["drawn_objects"]
        assert drawn[score]["min_score"] == score and len(os.listdir(rep["drawn"])) == 3
    assert drawn[1.01]["boxed"] == drawn[1.01]["spurious"] == 0
    assert drawn[0.0]["boxed"] + drawn[0.0]["spurious"] > 0


def test_too_few_members_is_one_line_naming_what_is_missing(trained, tmp_path):
    root, work = trained
    out = run([EVAL, *common(root, work), "--ensemble", "6", "--out", str(tmp_path)])
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "model_{2,3,4,5}" in out.stderr and "model_index=K" in out.stderr
    nowhere = run([EVAL, *common(root, work), "--checkpoints", str(tmp_path / "nope.pth"), "--out", str(tmp_path)])
    assert nowhere.returncode == 2 and "nope.pth: no such checkpoint" in nowhere.stderr
    assert len(nowhere.stderr.strip().splitlines()) == 1


def test_two_processes_score_as_one(trained, tmp_path):
    root, work = trained
    cpu = "device=cpu"  # gloo on the CPU, also where a GPU is (one GPU takes one process)
    one = report(run([EVAL, *common(root, work), cpu, "--out", str(tmp_path / "one")]), str(tmp_path / "one"))
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", EVAL,
                          *common(root, work), cpu, "--out", str(tmp_path / "two")], cwd=ROOT,
                         capture_output=True,
                         text=True, timeout=900, env={**os.environ, "PYTHONPATH": ROOT})
    rep = report(two, str(tmp_path / "two"))
    for k in ("model_0", "model_1"):
        assert rep["results"][k]["ilsvrc"]["map"] == pytest.approx(one["results"][k]["ilsvrc"]["map"], abs=1e-6)


def test_batches_of_8_score_as_batches_of_1(trained, tmp_path):
    """Batches hold images of one padded shape, so the per-class APs (and the detections) are
    batch size 1's; the miniature's val images come in several shapes, portrait and landscape."""
    root, work = trained
    reps = {b: report(run([EVAL, *common(root, work), "--batch-size", str(b), "--metric", "all", "--out",
                           str(tmp_path / str(b))]), str(tmp_path / str(b))) for b in (1, 8)}
    for k in ("model_0", "model_1"):
        for metric in ("ilsvrc", "voc", "coco"):
            one, eight = reps[1]["results"][k][metric], reps[8]["results"][k][metric]
            assert one["map"] == pytest.approx(eight["map"], abs=1e-3), (k, metric)
            for a, b in zip(one.get("ap", []), eight.get("ap", [])):
                assert (a is None and b is None) or a == pytest.approx(b, abs=1e-3), (k, metric)
        single, batched = _detections(tmp_path / "1" / k), _detections(tmp_path / "8" / k)
        assert len(single) == len(batched) > 20
        for a, b in zip(single, batched):
            assert a[:2] == b[:2] and a[2] == pytest.approx(b[2], abs=1e-4)
            np.testing.assert_allclose(a[3], b[3], atol=0.05)


def test_bf16_autocast_on_the_cpu_detects_what_fp32_detects(trained, tmp_path):
    """amp=bf16: the autocast path GPUs take, run on the CPU; boxes stay fp32 (the heads hand
    torchvision fp32 deltas), so the detections are fp32's within bf16's rounding of the scores."""
    root, work = trained
    member = ["--checkpoints", os.path.join(work, "googlenet_toy_det", "model_0", "model_final.pth")]
    fp32 = report(run([EVAL, *common(root, work), "--out", str(tmp_path / "fp32"), *member]), str(tmp_path / "fp32"))
    bf16 = report(run([EVAL, *common(root, work), "amp=bf16", "--out", str(tmp_path / "bf16"), *member]),
                  str(tmp_path / "bf16"))
    assert bf16["results"]["model_0"]["ilsvrc"]["map"] == pytest.approx(
        fp32["results"]["model_0"]["ilsvrc"]["map"], abs=0.03)
    ref, got = _detections(tmp_path / "fp32" / "model_0"), _detections(tmp_path / "bf16" / "model_0")
    z = np.load(tmp_path / "bf16" / "model_0" / "detections.npz")
    assert z["boxes"].dtype == np.float32 and np.isfinite(z["boxes"]).all() and np.isfinite(z["scores"]).all()
    best = {}  # per image and class, the best box: compare those (lower ones swap places under rounding)
    for i, lab, s, box in ref:
        best.setdefault((i, lab), (s, box))
    found = {}
    for i, lab, s, box in got:
        found.setdefault((i, lab), []).append((s, box))
    close = 0
    for key, (s, box) in best.items():
        cands = found.get(key, [])
        close += any(abs(t - s) <= 0.02 and np.abs(np.subtract(b, box)).max() <= 1.0 for t, b in cands)
    assert close >= 0.9 * len(best), (close, len(best))


def test_tta_scores_each_member_over_the_views_and_is_cached(trained, tmp_path):
    root, work = trained
    args = [EVAL, *common(root, work), "--tta", "data.tta_scales=[128]", "--metric", "all", "--out", str(tmp_path)]
    rep = report(run(args), str(tmp_path))
    assert set(rep["results"]) == {"model_0", "model_1", "model_0_tta", "model_1_tta"}
    for k in (0, 1):
        plain, tta = rep["results"][f"model_{k}"], rep["results"][f"model_{k}_tta"]
        assert tta["ilsvrc"]["map"] >= plain["ilsvrc"]["map"] - 0.01  # never more than a point below plain
    again = run(args)
    assert again.returncode == 0 and again.stderr.count("cached detections") == 4


def test_fuse_nms_keeps_the_best_of_overlapping_boxes():
    from detector.evaluation import ImageDetections
    from detector.inference.predict import fuse_detections

    a = ImageDetections(np.array([[10, 10, 50, 50]], np.float32), np.array([0.9], np.float32), np.array([1]))
    b = ImageDetections(np.array([[12, 10, 52, 50], [60, 60, 90, 90]], np.float32), np.array([0.8, 0.7], np.float32),
                        np.array([1, 2]))
    out = fuse_detections([a, b], "nms", 0.55, (100, 100))
    assert out.scores.tolist() == pytest.approx([0.9, 0.7]) and out.labels.tolist() == [1, 2]
    wbf = fuse_detections([a, b], "wbf", 0.55, (100, 100))
    # the overlapping pair becomes one box between them; the box only one member found scores half
    assert len(wbf.scores) == 2 and 10 < wbf.boxes[0, 0] < 12
    assert wbf.scores[1] == pytest.approx(0.35, abs=1e-6)


def test_boxed_objects_counts_what_a_person_sees_in_the_drawn_images():
    from detector.data.sample import ImageRecord
    from detector.eval_map.report import boxed_objects
    from detector.evaluation import ImageDetections

    gt = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 10], [0, 50, 10, 60]], np.float32)
    rec = ImageRecord("a.jpg", 1, 64, 64, gt, np.array([1, 2, 2, 3]), np.array([False, False, False, True]))
    dets = ImageDetections(
        np.array([[0, 0, 10, 10],     # class 1 on object 0: boxed
                  [1, 0, 10, 10],     # a second box on object 0 (IoU 0.9): taken already, so spurious
                  [20, 20, 40, 40],   # class 1 on a class-2 object: wrong class, spurious
                  [50, 0, 60, 10],    # class 2 on object 2 but under the score threshold: not drawn
                  [20, 20, 41, 41],   # class 2 on object 1 (IoU 0.91): boxed
                  [0, 50, 10, 60]],   # on the ignored object: neither boxed nor spurious
                 np.float32),
        np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.95], np.float32), np.array([1, 1, 1, 2, 2, 3]))
    assert boxed_objects([rec], [dets], min_score=0.3) == {"objects": 3, "boxed": 2, "spurious": 2}
    assert boxed_objects([rec], [dets], min_score=0.1) == {"objects": 3, "boxed": 3, "spurious": 2}
    # a class blacklisted in the image is not counted, and its own boxes on it are not spurious
    # (the class-1 box on a class-2 object still is: a wrong name)
    rec.ignore_classes = (2,)
    assert boxed_objects([rec], [dets], min_score=0.1) == {"objects": 1, "boxed": 1, "spurious": 2}
