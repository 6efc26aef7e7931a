"""Fault injection: broken data of every kind the readers handle, for ILSVRC (DET and CLS-LOC),
Pascal VOC and COCO, run through the real tools. Each run must exit 0 without a traceback, name
every bad item in its data report (``data_report/*.jsonl``) and keep every good item's boxes
exactly; a data set that cannot be used at all is one line naming the file and the fix."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from core.data_report import read_report
from core.miniature import make_toy_imagenet
from detector.data import COCODet, ILSVRCDet, VOCDet
from detector.data.toy import make_toy_ilsvrc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
BLACKLIST = "ILSVRC2015_det_validation_blacklist.txt"


def run(tool: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, os.path.join(TOOLS, tool), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": ROOT, **env})
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return out


def named(listing: str) -> set[tuple[str, str]]:
    """``(file name, "kind (action)")`` of every item in a data report list."""
    return {(os.path.basename(f.file), f.label) for f in read_report(listing).items}


def one_line(out: subprocess.CompletedProcess, *words: str) -> None:
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for w in words:
        assert w in out.stderr, out.stderr


def xml(size: tuple[int, int] | None, objects: list[tuple]) -> str:
    """An annotation; ``objects``: (name, xmin, ymin, xmax, ymax[, difficult]), a None field left out."""
    s = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    objs = []
    for name, *box in objects:
        fields = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box[:4]) if v is not None)
        diff = f"<difficult>{box[4]}</difficult>" if len(box) > 4 else ""
        objs.append(f"<object><name>{name}</name>{diff}<bndbox>{fields}</bndbox></object>")
    return f"<annotation>{s}{''.join(objs)}</annotation>"


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(60)


# -- ILSVRC DET, the real 2015 layout with the devkit in devkit/data -------------------------------
@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """The miniature in the 2015 layout, its devkit files under devkit/data/, broken; returns
    ``(root, the clean records by id, the expected findings)``."""
    root = make_toy_ilsvrc(str(tmp_path_factory.mktemp("ilsvrc") / "ILSVRC"), n_train=8, n_val=8, n_negative=2,
                           cls_per_class=1)
    clean = {r.image_id: r for r in ILSVRCDet(root, "val", synsets=os.path.join(root, "map_det.txt")).records}
    devkit = os.path.join(root, "devkit", "data")
    os.makedirs(devkit)
    shutil.move(os.path.join(root, "map_det.txt"), os.path.join(devkit, "map_det.txt"))
    shutil.move(os.path.join(root, "det_validation_blacklist.txt"), os.path.join(devkit, BLACKLIST))
    ids = [line.split()[0] for line in open(os.path.join(root, "ImageSets", "DET", "val.txt"))]
    ann, data = os.path.join(root, "Annotations", "DET", "val"), os.path.join(root, "Data", "DET", "val")
    a = lambda k: os.path.join(ann, ids[k] + ".xml")  # noqa: E731
    im = lambda k: os.path.join(data, ids[k] + ".JPEG")  # noqa: E731
    w, h = clean[ids[1]].width, clean[ids[1]].height
    with open(a(0), "w") as f:
        f.write("<annotation><size>")  # not well formed
    with open(a(1), "w") as f:
        f.write(xml((w, h), [("n90000001", 2, 3, 20, 30), ("n90000001", 1, 1, 10, None), ("n90000002", "nan", 1, 5, 5),
                             ("n90000002", 1, "abc", 5, 5), ("n90000003", 20, 5, 10, 15),
                             ("n90000004", w + 5, 2, w + 9, 8), ("n90000005", -5, 2, w + 9, 8),
                             ("n12345678", 1, 1, 5, 5)]))
    text = open(a(2)).read()
    with open(a(2), "w") as f:
        f.write(re.sub(r"<size>.*?</size>", "", text, flags=re.S))  # no size: read from the image
    truncate(im(3))
    os.unlink(im(4))
    os.unlink(a(7))  # a val image without its XML
    cv2.imwrite(im(5), np.zeros((h + 7, w, 3), np.uint8))  # another size than its XML says
    train_bad = sorted(os.listdir(os.path.join(root, "Data", "DET", "train")))[0]
    truncate(os.path.join(root, "Data", "DET", "train", train_bad))
    x, i = (lambda k: ids[k] + ".xml"), (lambda k: ids[k] + ".JPEG")
    reading = {(x(0), "unreadable annotations (image skipped)"),
               (x(1), "objects without a complete, numeric bndbox (object skipped)"),
               (x(1), "inverted boxes (dropped)"), (x(1), "boxes outside the image (dropped)"),
               (x(1), "boxes crossing the image border (scored as annotated, clipped for training)"),
               (x(1), "objects of unknown classes (object skipped)"),
               (x(2), "annotations without a size (read from the image header)"),
               (i(7), "images without an annotation file (read as having no objects)")}
    loading = {(i(k), "unreadable or mismatched images (image skipped)") for k in (3, 4, 5)}
    return root, clean, ids, reading, loading, train_bad


def test_ilsvrc_reader_keeps_good_boxes_exact(ilsvrc):
    root, clean, ids, *_ = ilsvrc
    ds = ILSVRCDet(root, "val", synsets=os.path.join(root, "devkit", "data", "map_det.txt"))
    got = {r.image_id: r for r in ds.records}
    assert ids[0] not in got and len(got) == 7
    for k in (2, 3, 4, 5, 6):  # unchanged annotations (2 lost only its size)
        assert np.array_equal(got[ids[k]].boxes, clean[ids[k]].boxes) and (got[ids[k]].width, got[ids[k]].height) == (
            clean[ids[k]].width, clean[ids[k]].height)
    w = got[ids[1]].width
    assert got[ids[1]].boxes.tolist() == [[2, 3, 21, 31], [-5, 2, w + 10, 9]]  # the good one and the crossing one
    assert got[ids[1]].labels.tolist() == [1, 5]
    # every finding of the 8 bad objects and files is kept, not 5 of them
    assert got[ids[7]].boxes.shape == (0, 4)
    assert len(ds.report) == 10 and len(ds.report.counts) == 8


def test_ilsvrc_tools_run_on_the_2015_layout_and_name_every_bad_item(ilsvrc, tmp_path):
    root, clean, ids, reading, loading, _ = ilsvrc
    cfg = ["configs/toy_det.yaml", f"data.root={root}", "data.toy=false", "data.test_scale=96", "data.max_size=160",
           "data.workers=0"]
    out = run("browse_dataset.py", *cfg, "--split", "val", "--n", "100", "--out", str(tmp_path / "browse"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert named(str(tmp_path / "browse" / "data_report" / "read_val.jsonl")) == reading | loading
    assert "named in" in out.stderr and len(os.listdir(tmp_path / "browse")) == 4 + 1  # 4 drawn, the report
    # scoring a results file reads the annotations (no image is decoded): no extra keys for the devkit
    results = tmp_path / "r.txt"
    r = clean[ids[6]]
    results.write_text("".join(f"{r.index} {int(c)} 0.9 {b[0]:g} {b[1]:g} {b[2] - 1:g} {b[3] - 1:g}\n"
                               for b, c in zip(r.boxes.tolist(), r.labels.tolist())))
    out = run("eval_map.py", *cfg, f"work_dir={tmp_path}", "--detections", str(results), "--out", str(tmp_path / "ev"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert named(str(tmp_path / "ev" / "data_report" / "read_val.jsonl")) == reading
    # the devkit's blacklist missing: one line that names the file to get and where
    shutil.move(os.path.join(root, "devkit", "data", BLACKLIST), str(tmp_path / BLACKLIST))
    try:
        one_line(run("eval_map.py", *cfg, f"work_dir={tmp_path}", "--detections", str(results)), BLACKLIST,
                 "devkit/data", "data.blacklist")
        one_line(run("eval_map.py", *cfg, "data.blacklist=nowhere.txt", "--detections", str(results)),
                 "nowhere.txt", "data.blacklist")
    finally:
        shutil.move(str(tmp_path / BLACKLIST), os.path.join(root, "devkit", "data", BLACKLIST))


def test_training_names_what_each_epoch_skipped_and_logs_plain_lines(ilsvrc, tmp_path):
    root, _, _, reading, loading, train_bad = ilsvrc
    out = run("train_det.py", "configs/toy_det.yaml", f"data.root={root}", "data.toy=false", f"work_dir={tmp_path}",
              "model.weights=null", "data.workers=0", "data.scales=[96]", "data.test_scale=96", "data.max_size=160",
              "data.negatives=1.0", "batch_size=2", "epochs=1", "model.rpn_post_nms_top_n_train=32",
              "model.box_batch_size_per_image=16", "model.rpn_post_nms_top_n_test=16", PROGRESS_SECONDS="0")
    assert out.returncode == 0, out.stderr[-2000:]
    reports = tmp_path / "googlenet_toy_det" / "model_0" / "data_report"
    assert named(str(reports / "read_val.jsonl")) == reading
    assert named(str(reports / "epoch_001.jsonl")) == {(train_bad, "unreadable or mismatched images (image skipped)")}
    assert named(str(reports / "evaluation_001.jsonl")) == loading
    # stderr is a pipe here: log lines, no carriage-return bar
    assert "\r" not in out.stderr
    assert re.search(r"^epoch 1/1  step (\d+)/\1 \(100%\)  loss \S+  lr \S+", out.stderr, re.M), out.stderr[-2000:]


# -- ILSVRC CLS-LOC (pretraining), the 2015 layout ---------------------------------------------------
def test_pretraining_finds_the_2015_layout_and_names_unreadable_images(tmp_path):
    toy = make_toy_imagenet(tmp_path / "toy", n_train=8, n_val=3, size=40, seed=0)
    root = tmp_path / "ILSVRC"
    cls = root / "Data" / "CLS-LOC"
    os.makedirs(cls)
    shutil.copytree(os.path.join(toy, "train"), cls / "train")
    ids = {w: int(i) for w, i, *_ in (line.split() for line in open(os.path.join(toy, "map_clsloc.txt")))}
    os.makedirs(cls / "val")
    labels = []
    for wnid in sorted(os.listdir(os.path.join(toy, "val"))):  # flat, as the tarball has it, labels in the devkit
        for f in sorted(os.listdir(os.path.join(toy, "val", wnid))):
            labels.append(ids[wnid])
            shutil.copy(os.path.join(toy, "val", wnid, f), cls / "val" / f"ILSVRC2012_val_{len(labels):08d}.JPEG")
    os.makedirs(root / "devkit" / "data")
    (root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_ground_truth.txt").write_text(
        "".join(f"{n}\n" for n in labels))
    shutil.copy(os.path.join(toy, "map_clsloc.txt"), root / "devkit" / "data" / "map_clsloc.txt")
    bad = sorted(os.listdir(cls / "train" / "n90000001"))[0]
    truncate(str(cls / "train" / "n90000001" / bad))
    args = ["configs/pretrain_toy.yaml", f"data.root={root}", "data.toy=false", f"work_dir={tmp_path}", "name=t",
            "data.crop=32", "data.resize=36", "data.workers=0", "batch_size=8", "epochs=1", "progress=false"]
    out = run("pretrain_backbone.py", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    listing = str(tmp_path / "t" / "data_report" / "epoch_001.jsonl")
    assert named(listing) == {(bad, "unreadable images (image skipped)")}
    metrics = json.load(open(tmp_path / "t" / "metrics.json"))
    assert metrics["images"] == len(labels)  # the flat val/ scored with the devkit's labels
    os.unlink(root / "devkit" / "data" / "ILSVRC2015_clsloc_validation_ground_truth.txt")
    one_line(run("pretrain_backbone.py", *args), "ILSVRC2015_clsloc_validation_ground_truth.txt", "data.val_labels")


# -- Pascal VOC ------------------------------------------------------------------------------------------
def test_voc_bad_items_named_good_boxes_exact(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(root / d)
    for k in range(5):
        cv2.imwrite(str(root / "JPEGImages" / f"v{k}.jpg"), np.full((48, 64, 3), 40 * k, np.uint8))
    (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"v{k}\n" for k in range(5)))
    good = [("dog", 1, 2, 30, 40, 0), ("cat", 10, 5, 64, 48, 1)]
    (root / "Annotations" / "v0.xml").write_text(xml((64, 48), good))
    (root / "Annotations" / "v2.xml").write_text(xml((64, 48), [("dog", 30, 5, 10, 20), ("dragon", 1, 1, 9, 9),
                                                                ("cat", 1, "x", 9, 9), ("cat", 2, 2, 9, 9)]))
    (root / "Annotations" / "v3.xml").write_text(xml((64, 48), good))
    (root / "Annotations" / "v4.xml").write_text(xml((64, 48), good))
    truncate(str(root / "JPEGImages" / "v3.jpg"))  # v1 has no XML at all
    # the class list given (without it, "dragon" would be a class of its own: tests/test_custom_classes.py)
    out = run("browse_dataset.py", "configs/toy_det.yaml", "data.format=voc", f"data.root={root}", "data.toy=false",
              "data.val_split=test", "data.test_scale=64", "data.max_size=100", "data.classes=[cat, dog]", "--split",
              "val", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert named(str(tmp_path / "b" / "data_report" / "read_val.jsonl")) == {
        ("v1.xml", "unreadable annotations (image skipped)"), ("v2.xml", "inverted boxes (dropped)"),
        ("v2.xml", "objects of unknown classes (object skipped)"),
        ("v2.xml", "objects without a complete, numeric bndbox (object skipped)"),
        ("v3.jpg", "unreadable or mismatched images (image skipped)")}
    recs = {r.image_id: r for r in VOCDet(str(root), "test").records}
    for k in ("v0", "v4"):  # 1-based inclusive -> xyxy; difficult kept as ignored
        assert recs[k].boxes.tolist() == [[0, 1, 30, 40], [9, 4, 64, 48]] and recs[k].ignore.tolist() == [False, True]
    assert recs["v2"].boxes.tolist() == [[1, 1, 9, 9]]


# -- COCO ------------------------------------------------------------------------------------------------
def coco_set(root, annotations: dict | str) -> None:
    os.makedirs(root / "annotations", exist_ok=True)
    text = annotations if isinstance(annotations, str) else json.dumps(annotations)
    (root / "annotations" / "instances_val.json").write_text(text)


def test_coco_bad_items_named_good_boxes_exact(tmp_path):
    root = tmp_path / "coco"
    os.makedirs(root / "val")
    for k in (1, 2, 3, 6):
        cv2.imwrite(str(root / "val" / f"{k}.jpg"), np.full((48, 64, 3), 50 * k % 255, np.uint8))
    truncate(str(root / "val" / "3.jpg"))
    img = lambda k, **kw: {"id": k, "file_name": f"{k}.jpg", "width": 64, "height": 48, **kw}  # noqa: E731
    images = [img(1), img(2), img(3), {"id": 5, "width": 64, "height": 48}, img(2), img(6, width=None),
              img(7, height=0)]
    ann = lambda i, image, box, **kw: {"id": i, "image_id": image, "category_id": 1, "bbox": box,  # noqa: E731
                                       "area": 10.0, "iscrowd": 0, **kw}
    anns = [ann(1, 1, [1, 2, 10, 20]), ann(2, 2, [5.5, 6, 7, 8], iscrowd=1, category_id=3), ann(3, 1, [1, 2, 3]),
            ann(4, 1, ["a", 1, 2, 3]), ann(5, 1, [math.nan, 1, 2, 3]), ann(6, 1, [1, 1, -5, 4]),
            ann(7, 1, [1, 1, 4, 0]), ann(8, 1, [100, 100, 5, 5]), ann(9, 2, [60, 40, 10, 10]),
            ann(10, 99, [1, 1, 4, 4]), ann(11, 1, [1, 1, 4, 4], category_id=7), ann(1, 2, [1, 1, 4, 4]),
            ann(12, 6, [2, 2, 4, 4], area=None), ann(13, 1, [1, 1, 4, 4], iscrowd=2), "not an object"]
    cats = [{"id": 1, "name": "dog"}, {"id": 3, "name": "cat"}]
    coco_set(root, {"images": images, "annotations": anns, "categories": cats})
    cfg = ["configs/toy_det.yaml", "data.format=coco", f"data.root={root}", "data.toy=false", "data.val_split=val",
           "data.test_scale=64", "data.max_size=100"]
    out = run("browse_dataset.py", *cfg, "--split", "val", "--out", str(tmp_path / "b"))
    assert out.returncode == 0, out.stderr[-2000:]
    items = read_report(str(tmp_path / "b" / "data_report" / "read_val.jsonl")).items
    labels = {re.match(r"(images\[\d+\]|image \d+|annotations?\[?\s?\d+\]?)", f.detail).group(0): f.label
              for f in items if f.file.endswith(".json")}
    assert labels == {
        "images[3]": "image entries without an id or a file_name (image skipped)",
        "images[4]": "repeated image ids (image skipped)",
        "image 6": "images without a valid size (read from the image header)",
        "image 7": "images without a size or a readable file (image skipped)",
        "annotation 3": "boxes that are not 4 numbers (skipped)", "annotation 4": "non-numeric boxes (skipped)",
        "annotation 5": "non-finite boxes (skipped)", "annotation 6": "empty or negative boxes (skipped)",
        "annotation 7": "empty or negative boxes (skipped)", "annotation 8": "boxes outside the image (skipped)",
        "annotation 9": "boxes crossing the image border (scored as annotated, clipped for training)",
        "annotation 10": "annotations of unknown images (skipped)",
        "annotation 11": "annotations of unknown categories (skipped)",
        "annotation 1": "repeated annotation ids (skipped)",
        "annotation 12": "annotations without a valid area (box area used)",
        "annotation 13": "iscrowd not 0 or 1 (skipped)", "annotations[14]": "annotations without an id (skipped)"}
    assert [os.path.basename(f.file) for f in items if not f.file.endswith(".json")] == ["3.jpg"]
    ds = COCODet(str(root / "annotations" / "instances_val.json"), str(root / "val"))
    recs = {r.image_id: r for r in ds.records}
    assert sorted(recs) == [1, 2, 3, 6]
    assert recs[1].boxes.tolist() == [[1, 2, 11, 22]] and recs[1].labels.tolist() == [1]
    assert recs[2].boxes.tolist() == [[5.5, 6, 12.5, 14], [60, 40, 70, 50]] and recs[2].ignore.tolist() == [True, False]
    assert all(np.isfinite(r.boxes).all() for r in ds.records)
    assert sorted(ds.coco.anns) == [1, 2, 9, 12] and ds.coco.anns[12]["area"] == 16.0  # what COCO scoring sees


def test_coco_files_that_are_not_coco_are_one_line(tmp_path):
    root = tmp_path / "coco"
    os.makedirs(root / "val")
    cv2.imwrite(str(root / "val" / "1.jpg"), np.zeros((48, 64, 3), np.uint8))
    cfg = ["configs/toy_det.yaml", "data.format=coco", f"data.root={root}", "data.toy=false", "data.val_split=val",
           "--split", "val", "--out", str(tmp_path / "b")]
    coco_set(root, "{not json")
    one_line(run("browse_dataset.py", *cfg), "instances_val.json", "not a JSON file")
    coco_set(root, {"images": [], "annotations": []})
    one_line(run("browse_dataset.py", *cfg), "no 'categories' list")
    coco_set(root, {"images": [{"id": 1, "file_name": "1.jpg", "width": 64, "height": 48}],
                    "categories": [{"id": 1, "name": "dog"}]})  # test-dev style: no annotations
    out = run("browse_dataset.py", *cfg)
    assert out.returncode == 0 and "files without annotations" in out.stderr, out.stderr[-2000:]


# -- outputs -------------------------------------------------------------------------------------------
def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import torch

    from core import atomic
    from core.cli import EXIT_BAD_INPUT, run_guarded

    path = str(tmp_path / "checkpoint.pth")
    atomic.save_atomic({"a": 1}, path)

    def no_space(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)  # save_atomic imports torch when called
    with pytest.raises(atomic.OutputError, match="no space left on the device"):
        atomic.save_atomic({"a": 2}, path)
    assert run_guarded("tool", lambda: atomic.save_atomic({"a": 2}, path)) == EXIT_BAD_INPUT
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"a": 1} and os.listdir(tmp_path) == ["checkpoint.pth"]

    def torn(obj, f):  # what torch.save raises when its zip container's write fails
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 24449600 vs 24449488")

    monkeypatch.setattr(torch, "save", torn)
    usage = shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=1 << 20))
    with pytest.raises(atomic.OutputError, match="1 MiB free"):
        atomic.save_atomic({"a": 3}, path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: usage._replace(free=10 << 30))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # with room left, not disguised as a full disk
        atomic.save_atomic({"a": 3}, path)
