"""tools/eval_map.py end to end on the suite's two trained members (tests/conftest.py): members,
the ensemble methods, the cache, results files scored without a model, and the errors. Two
computations of the same detections are held to agree on the confident ones (tests/helpers.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_same_detections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL = os.path.join(ROOT, "tools", "eval_map.py")


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": ROOT})


def evaluate(members, *args: str) -> subprocess.CompletedProcess:
    return run([EVAL, *members.eval_args(*args)])


def report(out: subprocess.CompletedProcess, folder: str) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(folder, "report.json")) as f:
        return json.load(f)


def per_image(folder) -> list[tuple]:
    """A result set's cached detections, per image: ``(boxes, scores, labels)``."""
    z = np.load(os.path.join(folder, "detections.npz"))
    ends = np.cumsum(z["counts"])
    return [(z["boxes"][a:b], z["scores"][a:b], z["labels"][a:b]) for a, b in zip(ends - z["counts"], ends)]


def assert_same_sets(a_folder, b_folder, min_score: float = 0.3) -> None:
    """Two result sets hold the same confident detections, image by image, and some of them."""
    a, b = per_image(a_folder), per_image(b_folder)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert_same_detections(x, y, min_score, at_least=0)
    assert sum((x[1] >= min_score).sum() for x in a) >= len(a)  # about an object an image, or more


def test_members_are_scored_with_tables_files_and_plots_and_then_come_from_the_cache(members, tmp_path):
    args = [EVAL, *members.eval_args("--metric", "all", "--out", str(tmp_path))]
    first = run(args)
    rep = report(first, str(tmp_path))
    assert set(rep["results"]) == {"model_0", "model_1"}
    for name in ("model_0", "model_1"):
        files = set(os.listdir(tmp_path / name))
        assert {"detections.npz", "ilsvrc.txt", "coco.json", "voc", "pr.png"} <= files
        assert len(os.listdir(tmp_path / name / "voc")) == 2  # comp4_det_val_<class>.txt, one per class
        r = rep["results"][name]
        assert r["ilsvrc"]["map"] >= 0.5 and len(r["ilsvrc"]["ap"]) == 2 and "AP50" in r["coco"]["stats"]
    assert "per-class AP (%), ilsvrc" in first.stdout and "circle" in first.stdout and "mean" in first.stdout
    assert "model_0" in first.stdout.split("mAP (%) on")[1]
    again = run(args)
    assert again.stderr.count("cached detections") == 2
    assert report(again, str(tmp_path))["results"] == rep["results"]


def test_a_results_file_scores_as_the_detections_in_memory(members, tmp_path):
    rep = report(evaluate(members, "--checkpoints", members.paths[0], "--metric", "all", "--out", str(tmp_path / "a")),
                 str(tmp_path / "a"))
    mem = rep["results"]["model_0"]
    coco_default = None
    for fmt in ("ilsvrc.txt", "coco.json", "voc"):  # voc: a folder of per-class files
        copy = shutil.copytree if fmt == "voc" else shutil.copy
        copy(tmp_path / "a" / "model_0" / fmt, tmp_path / f"sub_{fmt}")
        rep2 = report(evaluate(members, "--detections", str(tmp_path / f"sub_{fmt}"), "--metric", "all",
                               "--out", str(tmp_path / fmt)), str(tmp_path / fmt))
        got = rep2["results"][f"sub_{fmt.split('.')[0]}"]
        coco_default = got["coco"] if fmt == "coco.json" else coco_default
        for m in ("ilsvrc", "voc07", "voc"):
            np.testing.assert_allclose(got[m]["map"], mem[m]["map"], atol=2e-6, err_msg=f"{fmt} {m}")
        np.testing.assert_allclose(got["coco"]["map"], mem["coco"]["map"], atol=2e-5)
    # the COCO numbers from pycocotools itself: the default library's (hotcoco) to the digit
    ref = report(evaluate(members, "--detections", str(tmp_path / "sub_coco.json"), "--metric", "coco",
                          "--coco-backend", "pycocotools", "--out", str(tmp_path / "ref")), str(tmp_path / "ref"))
    assert ref["results"]["sub_coco"]["coco"]["stats"] == pytest.approx(coco_default["stats"], abs=1e-12)


def test_a_bad_results_file_is_one_line_naming_the_line(members, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 0.5 1 2 30 40\n1 99 0.5 1 2 30 40\n")
    out = evaluate(members, "--detections", str(bad), "--out", str(tmp_path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "bad.txt:2" in out.stderr and "class id 99" in out.stderr


def test_an_ensemble_of_two_identical_members_equals_the_single_model(members, tmp_path):
    twin = tmp_path / "twin.pth"
    shutil.copy(members.paths[1], twin)
    for method in ("shared", "nms", "wbf"):  # one --out: the member's detections are cached after the first
        rep = report(evaluate(members, "--checkpoints", members.paths[1], str(twin), "--ensemble", "2", "--method",
                              method, "--metric", "voc", "--out", str(tmp_path)), str(tmp_path))
        assert_same_sets(tmp_path / "model_1", tmp_path / f"ensemble2_{method}")
        assert rep["results"][f"ensemble2_{method}"]["voc"]["map"] == pytest.approx(
            rep["results"]["model_1"]["voc"]["map"], abs=5e-3)


def test_shared_ensemble_scores_members_and_ensemble_in_one_pass(members, tmp_path):
    rep = report(evaluate(members, "--ensemble", "2", "--out", str(tmp_path)), str(tmp_path))
    assert list(rep["results"]) == ["model_0", "model_1", "ensemble2_shared"]
    # the members' detections from the ensemble's pass are their own runs'
    alone = report(evaluate(members, "--out", str(tmp_path / "alone")), str(tmp_path / "alone"))
    for k in ("model_0", "model_1"):
        assert_same_sets(tmp_path / k, tmp_path / "alone" / k)
        assert rep["results"][k]["ilsvrc"]["map"] == pytest.approx(alone["results"][k]["ilsvrc"]["map"], abs=5e-3)


def test_draw_score_sets_what_is_drawn_and_counted(members, tmp_path):
    drawn = {}
    for score in (0.3, 1.01):  # the members box most objects at 0.3; no score reaches 1.01
        rep = report(evaluate(members, "--draw", "3", "--draw-score", str(score), "--out", str(tmp_path)),
                     str(tmp_path))
        drawn[score] = rep["drawn_objects"]
        assert drawn[score]["min_score"] == score and len(os.listdir(rep["drawn"])) == 3
    assert drawn[1.01]["boxed"] == drawn[1.01]["spurious"] == 0
    assert drawn[0.3]["boxed"] >= 0.5 * drawn[0.3]["objects"] > 0


def test_too_few_members_is_one_line_naming_what_is_missing(members, tmp_path):
    out = evaluate(members, "--ensemble", "6", "--out", str(tmp_path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "model_{2,3,4,5}" in out.stderr and "model_index=K" in out.stderr
    nowhere = evaluate(members, "--checkpoints", str(tmp_path / "nope.pth"), "--out", str(tmp_path))
    assert nowhere.returncode == 2 and "nope.pth: no such checkpoint" in nowhere.stderr
    assert len(nowhere.stderr.strip().splitlines()) == 1


def test_two_processes_score_as_one(members, tmp_path):
    cpu = "device=cpu"  # gloo on the CPU, also where a GPU is (one GPU takes one process)
    one = report(evaluate(members, cpu, "--out", str(tmp_path / "one")), str(tmp_path / "one"))
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", EVAL,
                          *members.eval_args(cpu, "--out", str(tmp_path / "two"))], cwd=ROOT, capture_output=True,
                         text=True, timeout=900, env={**os.environ, "PYTHONPATH": ROOT})
    rep = report(two, str(tmp_path / "two"))
    for k in ("model_0", "model_1"):
        assert_same_sets(tmp_path / "one" / k, tmp_path / "two" / k)
        assert rep["results"][k]["ilsvrc"]["map"] == pytest.approx(one["results"][k]["ilsvrc"]["map"], abs=5e-3)


def test_batches_of_8_score_as_batches_of_1(members, tmp_path):
    """Batches hold images of one padded shape, so the detections (and the per-class APs) are
    batch size 1's; the miniature's val images come in several shapes, portrait and landscape."""
    reps = {b: report(evaluate(members, "--batch-size", str(b), "--metric", "all", "--out", str(tmp_path / str(b))),
                      str(tmp_path / str(b))) for b in (1, 8)}
    for k in ("model_0", "model_1"):
        assert_same_sets(tmp_path / "1" / k, tmp_path / "8" / k)
        for metric in ("ilsvrc", "voc", "coco"):
            one, eight = reps[1]["results"][k][metric], reps[8]["results"][k][metric]
            assert one["map"] == pytest.approx(eight["map"], abs=5e-3), (k, metric)


def test_bf16_autocast_on_the_cpu_detects_what_fp32_detects(members, tmp_path):
    """amp=bf16: the autocast path GPUs take, run on the CPU; boxes stay fp32 (the heads hand
    torchvision fp32 deltas), so the confident detections find fp32's objects with fp32's labels,
    their scores within bf16's rounding of the features (8 bits of mantissa: about 1e-2). Boxes are
    compared by overlap, not to the pixel: bf16's rounding reaches the box regression, and the two
    refinement passes regress again from the moved box, so a box may move several pixels (measured
    with the kernels forced to AVX2, where bf16 is emulated: 7 px on a 60 px object)."""
    member = ["--checkpoints", members.paths[0]]
    fp32 = report(evaluate(members, "--out", str(tmp_path / "fp32"), *member), str(tmp_path / "fp32"))
    bf16 = report(evaluate(members, "amp=bf16", "--out", str(tmp_path / "bf16"), *member), str(tmp_path / "bf16"))
    assert bf16["results"]["model_0"]["ilsvrc"]["map"] == pytest.approx(
        fp32["results"]["model_0"]["ilsvrc"]["map"], abs=0.03)
    z = np.load(tmp_path / "bf16" / "model_0" / "detections.npz")
    assert z["boxes"].dtype == np.float32 and np.isfinite(z["boxes"]).all() and np.isfinite(z["scores"]).all()
    for x, y in zip(per_image(tmp_path / "fp32" / "model_0"), per_image(tmp_path / "bf16" / "model_0")):
        assert_same_detections(x, y, min_score=0.5, score_tol=0.05, at_least=0, min_iou=0.5)


def test_tta_scores_each_member_over_the_views_and_is_cached(members, tmp_path):
    args = [EVAL, *members.eval_args("--tta", "data.tta_scales=[112]", "--metric", "all", "--out", str(tmp_path))]
    rep = report(run(args), str(tmp_path))
    assert set(rep["results"]) == {"model_0", "model_1", "model_0_tta", "model_1_tta"}
    for k in (0, 1):
        plain, tta = rep["results"][f"model_{k}"], rep["results"][f"model_{k}_tta"]
        assert tta["ilsvrc"]["map"] >= plain["ilsvrc"]["map"] - 0.05  # the views (96, 112 px, mirrored) agree
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


def test_test_time_keys_named_on_the_command_line_replace_the_members_own(members, tmp_path):
    base = [EVAL, *members.eval_args("--checkpoints", members.paths[0], "--metric", "ilsvrc", "--out", str(tmp_path))]
    plain = report(run(base), str(tmp_path))["results"]["model_0"]["ilsvrc"]["map"]
    plain_dets = per_image(tmp_path / "model_0")
    voted_run = run(base + ["model.box_vote_iou=0.5"])
    assert "cached detections" not in voted_run.stderr  # another setting, other detections
    voted = report(voted_run, str(tmp_path))["results"]["model_0"]["ilsvrc"]["map"]
    voted_dets = per_image(tmp_path / "model_0")
    assert voted >= plain - 0.1
    for (_, ps, pl), (_, vs, vl) in zip(plain_dets, voted_dets):
        np.testing.assert_allclose(vs, ps, atol=1e-5)  # NMS keeps the same detections; voting moves them
        assert (vl == pl).all()
    assert any(len(p[0]) and np.abs(p[0] - v[0]).max() > 0.1 for p, v in zip(plain_dets, voted_dets))
    bad = run(base + ["model.box_vote_iou=2"])
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "model.box_vote_iou=2" in bad.stderr.strip().splitlines()[-1]
