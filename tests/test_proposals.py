"""Precomputed region proposals: the file, Selective Search, the recall table, tools/make_proposals.py
(resume, shards, bad input), and detectors that train, evaluate and ensemble on them."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from detector import ensemble
from detector.data.proposals import ProposalError, Proposals, aligned, load_proposals, save_proposals
from detector.data.sample import ImageRecord
from detector.data.toy import make_toy_ilsvrc
from detector.model import googlenet_faster_rcnn
from detector.proposals.recall import recall_table
from detector.proposals.selective_search import OPENCV_CONTRIB, SelectiveSearch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
MAKE = os.path.join(ROOT, "tools", "make_proposals.py")
TRAIN = os.path.join(ROOT, "tools", "train_det.py")
EVAL = os.path.join(ROOT, "tools", "eval_map.py")


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT}, **kw)


def record(image_id: str, h: int, w: int, boxes=(), ignore=None) -> ImageRecord:
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return ImageRecord("x.jpg", image_id, w, h, b, np.ones(len(b), np.int64),
                       np.zeros(len(b), bool) if ignore is None else np.asarray(ignore, bool))


def proposals(boxes_per_image: list, ids=None, sizes=None, split="val") -> Proposals:
    ids = ids or [f"im{i}" for i in range(len(boxes_per_image))]
    sizes = sizes or [(100, 120)] * len(ids)
    boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_per_image]
    return Proposals(np.array(ids), np.array(sizes), np.array([len(b) for b in boxes]), np.concatenate(boxes), None,
                     {"method": "test", "split": split})


# -- the file ------------------------------------------------------------------------------------
def test_the_file_round_trips_memory_mapped_and_byte_for_byte(tmp_path):
    p = proposals([[[0, 0, 10, 10], [5, 5, 50, 60]], [], [[1, 2, 3, 4]]])
    save_proposals(str(tmp_path / "a.npz"), p)
    time.sleep(1.1)  # zip timestamps have 2 s resolution: a clock-stamped writer would differ by now
    save_proposals(str(tmp_path / "b.npz"), p)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = load_proposals(str(tmp_path / "a.npz"))
    assert isinstance(back.boxes, np.memmap)
    assert back.of(0).tolist() == [[0, 0, 10, 10], [5, 5, 50, 60]] and back.of(1).shape == (0, 4)
    assert back.of(2).tolist() == [[1, 2, 3, 4]] and back.image_ids.tolist() == ["im0", "im1", "im2"]
    assert back.meta["split"] == "val" and back.scores is None


@pytest.mark.parametrize("boxes, what", [([[0, 0, np.nan, 5]], "NaN"), ([[10, 0, 5, 5]], "inverted"),
                                         ([[0, 0, np.inf, 5]], "infinite")])
def test_nan_infinite_or_inverted_boxes_are_one_error_naming_the_file(tmp_path, boxes, what):
    path = str(tmp_path / "bad.npz")
    save_proposals(path, proposals([[[0, 0, 5, 5]], boxes]))
    with pytest.raises(ProposalError, match="NaN, infinite or inverted") as e:
        load_proposals(path)
    assert path in str(e.value) and "im1" in str(e.value)


def test_files_that_do_not_fit_the_split_are_one_error_naming_the_file(tmp_path):
    path = str(tmp_path / "p.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ProposalError, match="unreadable proposals file"):
        load_proposals(str(tmp_path / "junk.npz"))
    save_proposals(path, proposals([[[0, 0, 5, 5]], [[1, 1, 9, 9]]]))
    p = load_proposals(path)
    recs = [record("im0", 100, 120), record("im1", 100, 120)]
    assert aligned(path, p, recs[::-1], "val") == [1, 0]
    with pytest.raises(ProposalError, match="made for split 'val', used for 'train'"):
        aligned(path, p, recs, "train")
    with pytest.raises(ProposalError, match=r"no proposals for 1 of the 3 images .* \(first: im9\)"):
        aligned(path, p, recs + [record("im9", 100, 120)], "val")
    with pytest.raises(ProposalError, match="made on a 120x100 image, the image is 240x200"):
        aligned(path, p, [record("im0", 200, 240)], "val")


# -- Selective Search and recall ------------------------------------------------------------------
def photo() -> np.ndarray:
    path = os.path.join(SHARED, "tiny_coco", "val2017", "000000000139.jpg")
    if os.path.isfile(path):
        return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)  # shapes on noise, when ../shared is not beside the checkout
    img = rng.integers(0, 60, (240, 320, 3), np.uint8)
    cv2.rectangle(img, (30, 40), (120, 150), (200, 40, 40), -1)
    cv2.circle(img, (230, 120), 50, (40, 200, 90), -1)
    return img


def test_selective_search_depends_on_the_image_alone_and_doubles_k_for_the_entry():
    img = cv2.resize(photo(), (200, 150))
    ss = SelectiveSearch("fast")
    first = ss(img)
    ss(cv2.flip(img, 1))  # another image in between moves OpenCV's rand() state on
    assert np.array_equal(first, ss(img))  # same boxes, same order
    assert ss.ks == [100, 200] and SelectiveSearch("fast", k_scale=1).ks == [50, 100]
    assert SelectiveSearch("quality").ks == [100, 200, 300, 600]
    assert len(first) > 20 and first.dtype == np.float32
    assert (first[:, :2] >= 0).all() and (first[:, 2] <= 200).all() and (first[:, 3] <= 150).all()
    assert (first[:, 2:] > first[:, :2]).all()
    # larger superpixels: fewer, coarser regions
    assert len(SelectiveSearch("fast", k_scale=1)(img)) > len(first)
    # a downscaled copy's boxes come back in the original's pixels
    big = SelectiveSearch("fast", max_side=100)(img)
    assert big[:, 2].max() > 150 and big[:, 2].max() <= 200


def test_recall_table_on_hand_worked_overlaps():
    # image 0: a 100x100 object; the best box covers half of it, the second 80%
    # image 1: a 10x10 object (ILSVRC threshold 100/400 = 0.25) and a box at IoU 0.3; an ignored crowd
    recs = [record("a", 200, 200, [[0, 0, 100, 100]]),
            record("b", 200, 200, [[0, 0, 10, 10], [50, 50, 90, 90]], ignore=[False, True])]
    props = [np.array([[0, 0, 100, 50], [0, 0, 100, 80]], np.float32), np.array([[0, 0, 10, 3]], np.float32)]
    rows = recall_table(recs, props, tops=(1, 2, None))
    assert [r["objects"] for r in rows] == [2, 2, 2]
    assert rows[0]["recall_0.5"] == 0.5 and rows[0]["recall_0.7"] == 0.0 and rows[0]["recall_ilsvrc"] == 1.0
    assert rows[1]["recall_0.7"] == 0.5 and rows[1]["boxes_per_image"] == 1.5 and rows[2]["top"] == "all"
    assert rows[0]["boxes_per_image"] == 1.0


def test_without_ximgproc_the_tool_says_which_wheel_fixes_it(monkeypatch, capsys):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import make_proposals
    finally:
        sys.path.pop(0)
    monkeypatch.delattr(cv2, "ximgproc")
    rc = make_proposals.main(["configs/toy_det.yaml", "data.root=/nonexistent", "--method", "ss"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "has no ximgproc" in err[0] and f"--force-reinstall {OPENCV_CONTRIB}" in err[0]


# -- tools/make_proposals.py -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_ilsvrc(str(tmp_path_factory.mktemp("d") / "ilsvrc"), n_train=8, n_val=6, n_negative=4,
                           cls_per_class=1)


def make_args(toy: str, split: str, out: str, *extra: str) -> list[str]:
    return [MAKE, "configs/toy_det.yaml", f"data.root={toy}", "data.toy=false", "progress=false", "--method", "ss",
            "--split", split, "--out", out, *extra]


@pytest.fixture(scope="module")
def ss_files(toy, tmp_path_factory):
    """Selective Search proposals of the miniature's train (negatives included) and val splits."""
    folder = tmp_path_factory.mktemp("p")
    for split in ("train", "val"):
        out = run(make_args(toy, split, str(folder / f"ss_{split}.npz"), "--workers", "2", "--chunk", "4"))
        assert out.returncode == 0, out.stderr[-2000:]
    return str(folder / "ss_{split}.npz")


def test_the_file_covers_the_split_with_a_recall_table(toy, ss_files):
    p = load_proposals(ss_files.format(split="train"))
    assert len(p.image_ids) == 12 and p.meta["split"] == "train" and p.meta["k"] == [100, 200]  # 8 + 4 negatives
    assert p.counts.min() > 0 and p.meta["method"] == "ss"
    table = json.load(open(ss_files.format(split="val").replace(".npz", ".recall.json")))
    top = table["rows"][-1]
    assert top["top"] == "all" and top["objects"] > 0 and top["recall_0.5"] >= 0.6  # drawn shapes: easy to cover
    assert not os.path.exists(ss_files.format(split="val") + ".parts")


def test_a_killed_run_finishes_with_the_identical_file(toy, ss_files, tmp_path):
    whole = ss_files.format(split="train")
    out = str(tmp_path / "resumed.npz")
    proc = subprocess.Popen([sys.executable, *make_args(toy, "train", out, "--chunk", "1")], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = out + ".parts"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(parts) and len([f for f in os.listdir(parts) if f.endswith(".npz")]) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not os.path.exists(out)
    again = run(make_args(toy, "train", out, "--chunk", "1"))
    assert again.returncode == 0, again.stderr[-2000:]
    same = run(make_args(toy, "train", str(tmp_path / "whole.npz"), "--chunk", "1"))
    assert same.returncode == 0
    assert open(out, "rb").read() == open(tmp_path / "whole.npz", "rb").read()
    assert np.array_equal(load_proposals(out).boxes, load_proposals(whole).boxes)  # chunking changes nothing


def test_shards_join_into_the_same_file(toy, ss_files, tmp_path):
    out = str(tmp_path / "sharded.npz")
    for k in (0, 1):
        done = run(make_args(toy, "val", out, "--chunk", "4", "--shard", f"{k}/2"))
        assert done.returncode == 0 and not os.path.exists(out), done.stderr[-2000:]
    joined = run(make_args(toy, "val", out, "--chunk", "4", "--merge"))
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert open(out, "rb").read() == open(ss_files.format(split="val"), "rb").read()
    missing = run(make_args(toy, "val", str(tmp_path / "none.npz"), "--merge"))
    assert missing.returncode == 2 and "chunks missing" in missing.stderr
    # the finished file with other settings: kept, and one line says why
    before = open(out, "rb").read()
    other = run(make_args(toy, "val", out, "--chunk", "4", "--k-scale", "1"))
    assert other.returncode == 2 and "made with other settings (k, k_scale differ)" in other.stderr
    assert open(out, "rb").read() == before


def test_the_ray_engine_writes_the_same_file(toy, ss_files, tmp_path):
    pytest.importorskip("ray", reason="--engine ray needs pip install -e '.[ray]' (make test installs it)")
    out = str(tmp_path / "ray.npz")
    done = run(make_args(toy, "train", out, "--engine", "ray", "--workers", "2", "--chunk", "4"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert open(out, "rb").read() == open(ss_files.format(split="train"), "rb").read()
    assert not os.path.exists(out + ".parts")


# -- detectors on external proposals ----------------------------------------------------------------
def tiny(toy: str, work: str, files: str, *extra: str) -> list[str]:
    return ["configs/toy_det.yaml", f"data.root={toy}", "data.toy=false", f"work_dir={work}", "model.weights=null",
            "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=160", "data.negatives=1.0",
            "batch_size=2", "epochs=1", "progress=false", "model.head=c4", "model.bbox_reg=false",
            "model.box_refine_iters=0", f"data.proposals={files}", "model.rpn_post_nms_top_n_train=32",
            "model.box_batch_size_per_image=16", "model.rpn_post_nms_top_n_test=16", *extra]


@pytest.fixture(scope="module")
def external_members(toy, ss_files, tmp_path_factory):
    """Two C4 members trained on the miniature's Selective Search boxes alone; their work dir."""
    work = tmp_path_factory.mktemp("ext")
    for k in (0, 1):
        out = run([TRAIN, *tiny(toy, str(work), ss_files, "model.proposals=external", "max_steps=3",
                                f"model_index={k}")])
        assert out.returncode == 0, out.stderr[-2000:]
    return work


def test_c4_trains_and_ensembles_on_selective_search_alone(toy, ss_files, external_members):
    work = external_members
    final = torch.load(work / "googlenet_toy_det" / "model_0" / "model_final.pth", weights_only=True)
    assert not any(k.startswith("rpn.") for k in final["model"])  # R-CNN: no RPN at all
    assert 0.0 <= final["metrics"]["map"] <= 1.0
    ev = run([EVAL, *tiny(toy, str(work), ss_files, "model.proposals=external"), "--ensemble", "2"])
    assert ev.returncode == 0, ev.stderr[-2000:]
    report = json.load(open(work / "googlenet_toy_det" / "eval_val" / "report.json"))
    assert set(report["results"]) == {"model_0", "model_1", "ensemble2_shared"}
    # scored with the RPN's settings instead: one line naming the member and the key
    wrong = run([EVAL, *tiny(toy, str(work), ss_files), "--ensemble", "2", "--no-cache"])
    assert wrong.returncode == 2 and "model.proposals=external" in wrong.stderr
    # infer runs Selective Search for it; the export, whose graph takes an image alone, refuses it
    member = str(work / "googlenet_toy_det" / "model_0" / "model_final.pth")
    image = os.path.join(toy, "Data", "DET", "val")
    inferred = run([os.path.join(ROOT, "tools", "infer.py"), member, image, "--out", str(work / "inf"),
                    "--score", "0"])
    assert inferred.returncode == 0, inferred.stderr[-2000:]
    found = json.load(open(work / "inf" / "detections.json"))
    assert "6 image(s)" in inferred.stdout and found and {d["image_id"] for d in found} <= set(range(1, 7))
    exported = run([os.path.join(ROOT, "tools", "export.py"), member, "--format", "torchscript"])
    assert exported.returncode == 2 and "only members that make their own regions" in exported.stderr
    # a file made for another split
    other = run([TRAIN, *tiny(toy, str(work / "o"), ss_files.format(split="val"), "model.proposals=external")])
    assert other.returncode == 2 and "made for split 'val', used for 'train'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_c4_trains_on_selective_search_joined_with_its_rpn(toy, ss_files, external_members, tmp_path):
    out = run([TRAIN, *tiny(toy, str(tmp_path), ss_files, "model.proposals=both", "max_steps=3")])
    assert out.returncode == 0, out.stderr[-2000:]
    log = [json.loads(line) for line in open(tmp_path / "googlenet_toy_det" / "model_0" / "log.jsonl")]
    steps = [r for r in log if "loss_objectness" in r]
    assert steps and all("loss_classifier" in r and "loss_box_reg" not in r for r in steps)
    # its RPN's best boxes as a proposals file (MultiBox's stand-in), with their objectness
    member = str(tmp_path / "googlenet_toy_det" / "model_0" / "model_final.pth")
    out = str(tmp_path / "rpn_val.npz")
    args = [MAKE, "configs/toy_det.yaml", f"data.root={toy}", "data.toy=false", "progress=false",
            "data.test_scale=96", "data.max_size=160", "--method", "rpn", "--checkpoint", member, "--top-n", "5",
            "--split", "val", "--threads", "1"]
    made = run([*args, "--out", out])
    assert made.returncode == 0, made.stderr[-2000:]
    p = load_proposals(out)
    assert p.scores is not None and len(p.scores) == len(p.boxes) and 0 < p.counts.max() <= 5
    assert p.meta["method"] == "rpn" and "proposal recall" in made.stdout
    if importlib.util.find_spec("ray"):  # the member loaded in a Ray actor: the same boxes and scores
        on_ray = run([*args, "--out", str(tmp_path / "rpn_ray.npz"), "--engine", "ray", "--workers", "1"])
        assert on_ray.returncode == 0, on_ray.stderr[-2000:]
        assert open(tmp_path / "rpn_ray.npz", "rb").read() == open(out, "rb").read()
    external = str(external_members / "googlenet_toy_det" / "model_0" / "model_final.pth")
    none = run([MAKE, "configs/toy_det.yaml", f"data.root={toy}", "--method", "rpn", "--checkpoint", external])
    assert none.returncode == 2 and "has no RPN" in none.stderr


def test_unreadable_images_get_no_boxes_and_are_named(toy, tmp_path):
    import shutil

    root = str(tmp_path / "broken")
    shutil.copytree(toy, root)
    name = open(os.path.join(root, "ImageSets", "DET", "val.txt")).readline().split()[0]
    broken = os.path.join(root, "Data", "DET", "val", name + ".JPEG")
    with open(broken, "wb") as f:
        f.write(b"\xff\xd8 truncated")
    out = str(tmp_path / "p" / "ss_val.npz")
    made = run(make_args(root, "val", out))
    assert made.returncode == 0, made.stderr[-2000:]
    p = load_proposals(out)
    assert p.counts[p.image_ids.tolist().index(name)] == 0 and p.counts.sum() > 0
    listed = [json.loads(line) for line in open(tmp_path / "p" / "data_report" / "proposals_val.jsonl")]
    assert [x["file"] for x in listed] == [broken] and "image skipped (no proposals)" in made.stderr


@pytest.mark.parametrize("source", ["external", "both"])
def test_every_member_scores_the_same_regions(monkeypatch, source):
    torch.manual_seed(0)
    make = lambda: googlenet_faster_rcnn(3, head="c4", bbox_reg=False, proposals=source,  # noqa: E731
                                         rpn_post_nms_top_n_test=8).eval()
    a, b = make(), make()
    images = [torch.rand(3, 64, 96), torch.rand(3, 64, 96)]
    external = [torch.tensor([[0.0, 0.0, 40.0, 30.0], [10.0, 5.0, 90.0, 60.0]]), torch.tensor([[5.0, 5.0, 50.0, 50.0]])]
    seen = []
    head = ensemble.head_outputs
    monkeypatch.setattr(ensemble, "head_outputs", lambda m, f, boxes, sizes: seen.append([x.clone() for x in boxes])
                        or head(m, f, boxes, sizes))
    ensemble.detect_shared([a, b], images, external=external)
    assert len(seen) == 2 and all(torch.equal(x, y) for x, y in zip(seen[0], seen[1]))
    for x, e in zip(seen[0], external):
        assert torch.equal(x[: len(e)], e)  # the external boxes, first, as given
        assert len(x) == len(e) if source == "external" else len(x) > len(e)


def test_an_ensemble_of_two_identical_members_is_the_member():
    torch.manual_seed(0)
    a = googlenet_faster_rcnn(3, head="c4", bbox_reg=False, proposals="external", box_score_thresh=0.0).eval()
    b = googlenet_faster_rcnn(3, head="c4", bbox_reg=False, proposals="external", box_score_thresh=0.0).eval()
    b.load_state_dict(a.state_dict())
    images = [torch.rand(3, 64, 96)]
    external = [torch.tensor([[0.0, 0.0, 40.0, 30.0], [10.0, 5.0, 90.0, 60.0], [30.0, 20.0, 60.0, 50.0]])]
    with torch.inference_mode():
        alone = a(images, proposals=external)[0]
    both, _ = ensemble.detect_shared([a, b], images, external=external)
    order_a, order_b = alone["scores"].argsort(), both[0]["scores"].argsort()
    assert len(alone["scores"]) == len(both[0]["scores"]) > 0
    assert torch.allclose(alone["scores"][order_a], both[0]["scores"][order_b], atol=1e-5)
    assert torch.equal(alone["labels"][order_a], both[0]["labels"][order_b])
    assert torch.allclose(alone["boxes"][order_a], both[0]["boxes"][order_b])


def test_images_without_proposals_train_as_background_and_detect_nothing():
    torch.manual_seed(0)
    model = googlenet_faster_rcnn(3, head="c4", bbox_reg=False, proposals="external", box_batch_size_per_image=8)
    images = [torch.rand(3, 64, 96), torch.rand(3, 64, 96)]
    none = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    losses = model(images, none, proposals=[torch.zeros(0, 4), torch.zeros(0, 4)])  # two negatives, no regions
    assert set(losses) == {"loss_classifier"} and torch.isfinite(losses["loss_classifier"])
    with torch.inference_mode():
        out = model.eval()(images, proposals=[torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 30.0, 30.0]])])
    assert len(out[0]["boxes"]) == 0 and len(out[1]["boxes"]) > 0
    with pytest.raises(ValueError, match="pass proposals"):
        model(images)
