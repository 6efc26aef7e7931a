"""Detection data: real samples from ../shared/data, augmentation geometry, and bad input."""

from __future__ import annotations

import glob
import json
import os
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from core.config import ConfigError
from detector import box_ops
from detector.data import (
    COCODet,
    DataReport,
    DetSample,
    DetTransform,
    GroupedBatchSampler,
    ILSVRCDet,
    ImageRecord,
    Skipped,
    VOCDet,
    collate,
    load_sample,
    parse_xml,
    records_to_coco,
    resize_scale,
)
from detector.data.build import DetDataConfig, build_detection_data
from detector.data.dataset import DetectionDataset
from detector.data.sample import CROSSING
from detector.data.toy import det_image, make_toy_ilsvrc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside the checkout")


# -- real samples --------------------------------------------------------------------------------
@needs_shared
def test_real_vid_sample_parses_to_the_boxes_in_its_xml():
    xmls = sorted(glob.glob(os.path.join(SHARED, "ilsvrc_vid_sample", "ILSVRC2015", "Annotations", "VID", "train",
                                         "*", "*", "*.xml")))
    assert len(xmls) >= 40
    n_objects = 0
    for path in xmls:
        text = open(path).read()
        width, height, objects = parse_xml(path)
        assert (width, height) == (int(re.search(r"<width>(\d+)", text).group(1)),
                                   int(re.search(r"<height>(\d+)", text).group(1)))
        # an independent reading: each <bndbox> block's fields by regex, whatever their order
        blocks = re.findall(r"<bndbox>(.*?)</bndbox>", text, re.S)
        expected = [tuple(float(re.search(fr"<{t}>([\d.]+)</{t}>", b).group(1))
                          for t in ("xmin", "ymin", "xmax", "ymax"))
                    for b in blocks]
        assert [o.box for o in objects] == expected
        assert [o.name for o in objects] == re.findall(r"<name>(\w+)</name>", text)
        n_objects += len(objects)
        # and to xyxy and back
        for o in objects:
            back = box_ops.xyxy_to_inclusive(box_ops.inclusive_to_xyxy(np.array([o.box])))
            assert back[0].tolist() == list(o.box)
    assert n_objects > 0
    # the frames decode at the annotated size
    frame = xmls[0].replace("Annotations", "Data").replace(".xml", ".JPEG")
    rec = ImageRecord(frame, "f", width=1280, height=720, boxes=np.zeros((0, 4), np.float32),
                      labels=np.zeros(0, np.int64), ignore=np.zeros(0, bool), source=xmls[0])
    assert load_sample(rec).image.shape == (720, 1280, 3)


@needs_shared
def test_tiny_coco_round_trips_with_crowds_as_ignore():
    ann = os.path.join(SHARED, "tiny_coco", "annotations", "instances_val2017.json")
    ds = COCODet(ann, os.path.join(SHARED, "tiny_coco", "val2017"))
    original = json.load(open(ann))
    assert len(ds.records) == len(original["images"]) == 50
    assert ds.category_ids[0] == 1 and len(ds.category_ids) == 80 and ds.label_of[90] == 80  # ids 1..90 -> 1..80
    assert sum(int(r.ignore.sum()) for r in ds.records) == 5  # the crowd regions, kept as ignored
    back = records_to_coco(ds.records, ds.category_ids, ds.classes)
    dropped = sum(ds.report.counts.values()) - ds.report.counts[CROSSING]
    assert len(back["annotations"]) == len(original["annotations"]) - dropped
    by_image: dict = {}
    for a in original["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    written: dict = {}
    for a in back["annotations"]:
        written.setdefault(a["image_id"], []).append(a)
    for image_id, anns in by_image.items():
        want = sorted((a["category_id"], a["iscrowd"], *np.round(a["bbox"], 2)) for a in anns)
        got = sorted((a["category_id"], a["iscrowd"], *np.round(a["bbox"], 2)) for a in written[image_id])
        assert len(want) == len(got)
        for w, g in zip(want, got):
            assert w[:2] == g[:2] and np.allclose(w[2:], g[2:], atol=0.011)
    sample = load_sample(ds.records[0])
    assert sample.image.shape[:2] == (ds.records[0].height, ds.records[0].width)


# -- augmentation geometry ------------------------------------------------------------------------
def one_object_sample(h=90, w=140, box=(30, 20, 71, 51), colour=(250, 20, 20)) -> DetSample:
    img = np.full((h, w, 3), 40, np.uint8)
    x1, y1, x2, y2 = box  # xyxy: pixels x1..x2-1
    img[y1:y2, x1:x2] = colour
    return DetSample(img, np.array([box], np.float32), np.array([3]), np.array([False]), "x", (h, w))


def object_extent(image: np.ndarray) -> tuple[float, float, float, float]:
    mask = (image[:, :, 0] > 150) & (image[:, :, 1] < 100)
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("seed", range(8))
def test_augmentation_keeps_boxes_on_their_objects(seed):
    t = DetTransform((64, 100, 150), max_size=200, train=True, flip=0.5, photometric=0.0)
    t.set_seed(seed)
    out = t(one_object_sample())
    assert out.boxes.shape == (1, 4) and out.labels.tolist() == [3]
    ext = object_extent(out.image)
    assert np.allclose(out.boxes[0], ext, atol=1.5), (out.boxes[0], ext)


def test_flip_maps_xyxy():
    s = one_object_sample()
    t = DetTransform((90,), max_size=1000, train=True, flip=1.0, photometric=0.0)  # scale 1: only the flip
    out = t(s)
    assert out.image.shape == s.image.shape
    assert out.boxes[0].tolist() == [140 - 71, 20, 140 - 30, 51]
    assert out.boxes[0].tolist() == box_ops.hflip_xyxy(s.boxes, 140)[0].tolist()
    assert np.array_equal(out.image, s.image[:, ::-1])


@pytest.mark.parametrize("h,w", [(90, 140), (300, 100), (50, 400), (128, 128)])
def test_multi_scale_respects_the_limits(h, w):
    scales, cap = (64, 96, 128), 200
    # every legal outcome: the shorter side to a scale, unless that takes the longer past the cap
    legal = {(round(h * f), round(w * f)) for f in (resize_scale(h, w, s, cap) for s in scales)}
    seen = set()
    for seed in range(12):
        t = DetTransform(scales, cap, train=True, photometric=0.0)
        t.set_seed(seed)
        out = t(one_object_sample(h, w, box=(5, 5, 20, 20)))
        size = out.image.shape[:2]
        assert size in legal and max(size) <= cap
        seen.add(size)
    assert len(seen) == len(legal)  # the scales are all drawn
    if (h, w) == (300, 100):
        assert legal == {(192, 64), (200, 67)}  # 96 and 128 would pass the cap: capped at 200
    evaluation = DetTransform((96,), cap, train=False)
    size = evaluation(one_object_sample(h, w, box=(5, 5, 20, 20))).image.shape[:2]
    assert size == (round(h * resize_scale(h, w, 96, cap)), round(w * resize_scale(h, w, 96, cap)))


def test_boxes_made_degenerate_are_dropped():
    s = one_object_sample(box=(30, 20, 31, 51))  # 1 px wide
    s.boxes = np.array([[30, 20, 31, 51], [40, 40, 60, 60]], np.float32)
    s.labels, s.ignore = np.array([1, 2]), np.array([False, True])
    t = DetTransform((45,), max_size=1000, train=True, flip=1.0, photometric=0.0)  # halves it: 0.5 px
    out = t(s)
    assert out.labels.tolist() == [2] and out.ignore.tolist() == [True]  # the flags stay with their box


# -- sampling -------------------------------------------------------------------------------------
def test_grouped_batches_share_orientation_and_shard_across_processes():
    aspects = [1.5, 0.7, 1.2, 0.5, 1.9, 0.8, 1.0, 0.6, 1.3, 1.4, 0.9, 2.0]
    s = GroupedBatchSampler(aspects, batch_size=2, seed=1)
    batches = list(s)
    assert len(batches) == len(s)
    assert sorted(i for b in batches for i in b) == list(range(12))
    for b in batches:  # remainders included
        assert len({aspects[i] >= 1 for i in b}) == 1
    ranks = [list(GroupedBatchSampler(aspects, 2, seed=1, rank=r, world=2)) for r in (0, 1)]
    mine = [set(i for b in batches for i in b) for batches in ranks]
    assert not mine[0] & mine[1] and len(mine[0] | mine[1]) >= 12 - 2 * 2
    # every process takes the same number of steps (or DDP's all-reduce would wait forever)
    assert len(ranks[0]) == len(ranks[1]) == len(GroupedBatchSampler(aspects, 2, seed=1, rank=0, world=2))
    again = GroupedBatchSampler(aspects, 2, seed=1)
    assert list(again) == batches
    again.epoch = 1
    assert list(again) != batches


# -- the miniature and bad input -------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_ilsvrc(str(tmp_path_factory.mktemp("t") / "ilsvrc"), n_train=12, n_val=8, n_negative=4,
                           cls_per_class=2)


def test_miniature_layout_and_index(toy):
    for sub in ("Data/DET/train", "Annotations/DET/train", "Data/DET/val", "ImageSets/DET/val.txt",
                "ImageSets/DET/train_1.txt", "map_det.txt", "det_validation_blacklist.txt", "Data/CLS-LOC/train"):
        assert os.path.exists(os.path.join(toy, sub)), sub
    negatives = [p for p in glob.glob(os.path.join(toy, "Data/DET/train/*.JPEG"))
                 if not os.path.exists(p.replace("Data", "Annotations").replace(".JPEG", ".xml"))]
    assert len(negatives) == 4
    synsets = os.path.join(toy, "map_det.txt")
    no_neg = ILSVRCDet(toy, "train", synsets=synsets, negatives=0.0)
    all_neg = ILSVRCDet(toy, "train", synsets=synsets, negatives=1.0)
    assert len(no_neg.records) == 12 and len(all_neg.records) == 16
    assert sum(len(r.labels) == 0 for r in all_neg.records) == 4
    sizes = [(r.width, r.height) for r in all_neg.records]
    assert all(w > 0 and h > 0 for w, h in sizes)
    boxes = np.concatenate([r.boxes for r in no_neg.records])
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert ((w < 25) & (h < 25)).any()  # some objects smaller than 25x25 px
    val = ILSVRCDet(toy, "val", synsets=synsets, blacklist=os.path.join(toy, "det_validation_blacklist.txt"))
    assert [r.index for r in val.records] == list(range(1, 9)) and val.records[0].ignore_classes == (1,)
    for r in val.records:  # blacklisted classes' boxes are ignored
        assert np.array_equal(r.ignore, np.isin(r.labels, r.ignore_classes))


def hue_histograms(records, saturated: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each object's 16-bin hue histogram over its box (OpenCV hue, 0..179), normalised, and its
    class: over every pixel of the box, or over its saturated pixels only (the drawn shape's,
    where the muted background drops out), the stronger of the two colour-only classifiers."""
    feats, labels = [], []
    for r in records:
        hsv = cv2.cvtColor(cv2.imread(r.path), cv2.COLOR_BGR2HSV)
        for (x0, y0, x1, y1), lab in zip(r.boxes.astype(int), r.labels):
            px = hsv[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3).astype(np.int64)
            if saturated and (px[:, 1] >= 120).any():
                px = px[px[:, 1] >= 120]
            hist = np.bincount(px[:, 0] * 16 // 180, minlength=16).astype(np.float64)
            feats.append(hist / hist.sum())
            labels.append(lab)
    return np.array(feats), np.array(labels)


def test_colour_alone_names_few_of_the_miniatures_objects(tmp_path):
    """The shapes tell the classes apart, not their colours: each class's hues overlap its
    neighbours' (core.miniature.HUE_SPREAD), so a nearest-neighbour classifier on the hue
    histograms of the training objects' boxes names the class of at most 40% of the validation
    objects (chance: 10%). Measured on the demo's miniature (seed 0): 26-33% across the four
    variants below; a hue range of its own per class gave 91% (saturated pixels, L2)."""
    root = make_toy_ilsvrc(str(tmp_path / "toy"))  # the demo's, as configs/toy_det.yaml makes it
    synsets = os.path.join(root, "map_det.txt")
    train = ILSVRCDet(root, "train", synsets=synsets, blacklist=None).records
    val = ILSVRCDet(root, "val", synsets=synsets, blacklist=None).records
    for saturated in (False, True):
        xt, yt = hue_histograms(train, saturated)
        xv, yv = hue_histograms(val, saturated)
        assert len(yv) > 150
        for dist in (np.abs(xv[:, None] - xt[None]).sum(-1), ((xv[:, None] - xt[None]) ** 2).sum(-1)):  # L1, L2
            named = (yt[dist.argmin(1)] == yv).mean()
            assert named <= 0.40, (saturated, named)


def test_miniature_boxes_overlap_but_never_hide_each_other():
    rng = np.random.default_rng(0)
    ious = []
    for _ in range(60):
        img, objects = det_image(rng, 10)
        boxes = torch.tensor([b for _, b in objects], dtype=torch.float64) + torch.tensor([0, 0, 1, 1])  # xyxy
        ious += box_iou(boxes, boxes)[np.triu_indices(len(boxes), 1)].tolist()
    ious = np.array(ious)
    assert (ious > 0).sum() >= 5 and ious.max() <= 0.4 + 1e-9  # neighbours overlap, never hide each other


def write_xml(path, size: tuple[int, int] | None, objects: list[str]) -> None:
    s = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    with open(path, "w") as f:
        f.write(f"<annotation>{s}{''.join(objects)}</annotation>")


def obj(name, xmin=None, ymin=None, xmax=None, ymax=None) -> str:
    fields = "".join(f"<{t}>{v}</{t}>" for t, v in (("xmax", xmax), ("ymin", ymin), ("xmin", xmin), ("ymax", ymax))
                     if v is not None)
    return f"<object><name>{name}</name><bndbox>{fields}</bndbox></object>"


def test_bad_annotations_are_fixed_or_skipped_and_reported(toy, tmp_path):
    import shutil

    root = str(tmp_path / "bad")
    shutil.copytree(toy, root)
    ann = os.path.join(root, "Annotations", "DET", "val")
    names = [line.split()[0] for line in open(os.path.join(root, "ImageSets", "DET", "val.txt"))]
    w, h = Image.open(os.path.join(root, "Data", "DET", "val", names[0] + ".JPEG")).size
    write_xml(os.path.join(ann, names[0] + ".xml"), None, [obj("n90000001", 1, 1, 10, 10)])  # no size
    write_xml(os.path.join(ann, names[1] + ".xml"), (w, h), [obj("n90000001", 1, 1, 10),  # no ymax
                                                             obj("n90000002", 20, 5, 10, 15),  # xmax < xmin
                                                             obj("n90000003", -5, 2, w + 9, 8),  # crosses border
                                                             obj("n90000004", w + 5, 2, w + 9, 8),  # outside
                                                             obj("n12345678", 1, 1, 5, 5)])  # unknown wnid
    with open(os.path.join(ann, names[2] + ".xml"), "w") as f:
        f.write("<annotation><size>")  # not well formed
    ds = ILSVRCDet(root, "val", synsets=os.path.join(root, "map_det.txt"))
    c = ds.report.counts
    assert c["annotations without a size (read from the image header)"] == 1
    assert c["objects without a complete, numeric bndbox (object skipped)"] == 1
    assert c["inverted boxes (dropped)"] == 1
    assert c[CROSSING] == 1 and c["boxes outside the image (dropped)"] == 1
    assert c["objects of unknown classes (object skipped)"] == 1 and c["unreadable annotations (image skipped)"] == 1
    assert len(ds.records) == 7
    rec1 = next(r for r in ds.records if r.image_id == names[1])
    assert rec1.boxes.tolist() == [[-5.0, 2.0, float(w + 10), 9.0]]  # only the crossing one, as annotated
    assert (rec1.width, rec1.height) == (w, h)
    text = ds.report.summary("val")
    assert text.startswith("val: ") and names[1] in text and "\n" in text  # one line, then examples


def test_bad_images_are_skipped_and_named_without_ending_the_epoch(toy, tmp_path):
    import shutil

    root = str(tmp_path / "badimg")
    shutil.copytree(toy, root)
    data = os.path.join(root, "Data", "DET", "val")
    files = sorted(glob.glob(os.path.join(data, "*.JPEG")))
    with open(files[0], "r+b") as f:
        f.truncate(100)  # truncated
    os.unlink(files[1])  # missing
    ds, index = build_detection_data(DetDataConfig(root=root, val_split="val", test_scale=64, max_size=128,
                                                   synsets=os.path.join(root, "map_det.txt")), train=False)
    batch = collate([ds[i] for i in range(len(ds))])
    assert len(batch.images) == len(ds) - 2
    assert batch.report.counts["unreadable or mismatched images (image skipped)"] == 2
    assert sorted(f.file for f in batch.report.items) == files[:2]
    # through a DataLoader: the epoch goes on, and ends with one summary and the complete list
    from torch.utils.data import DataLoader

    from core.data_report import Collecting, DataReport, publish, read_report

    printed, seen = [], DataReport()
    loader = DataLoader(ds, batch_size=3, collate_fn=collate)
    n = sum(len(b.images) for b in Collecting(loader, seen))
    listing = str(tmp_path / "report" / "epoch_001.jsonl")
    publish(seen, "epoch 1", listing, printed.append)
    assert n == len(ds) - 2 and len(printed) == 1
    assert printed[0].splitlines()[0] == "epoch 1: 2 unreadable or mismatched images (image skipped)"
    assert printed[0].splitlines()[-1] == f"  all 2 named in {listing}"
    assert read_report(listing).items == seen.items
    publish(DataReport(), "epoch 1", listing, printed.append)  # a rerun that met nothing leaves no stale list
    assert not os.path.exists(listing) and len(printed) == 1


def test_image_kinds_are_converted(tmp_path):
    def rec(path, w, h):
        return ImageRecord(str(path), "x", w, h, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                           np.zeros(0, bool), source="test")

    cv2.imwrite(str(tmp_path / "g.png"), np.full((6, 9), 77, np.uint8))
    cv2.imwrite(str(tmp_path / "d.png"), np.full((6, 9, 3), 50000, np.uint16))
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([np.full((6, 9, 3), 90, np.uint8), np.full((6, 9), 10, np.uint8)]))
    Image.new("CMYK", (9, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")  # CMYK red
    for name in ("g.png", "d.png", "a.png", "c.jpg"):
        img = load_sample(rec(tmp_path / name, 9, 6)).image
        assert img.shape == (6, 9, 3) and img.dtype == np.uint8, name
    cmyk = load_sample(rec(tmp_path / "c.jpg", 9, 6)).image
    assert cmyk[3, 4, 0] > 200 and cmyk[3, 4, 1] < 60  # red, in RGB order


def test_exif_rotated_jpeg_follows_its_annotation(tmp_path):
    """Stored 40x20 with EXIF orientation 6 (displayed 20x40): boxes drawn on the stored pixels
    (annotation says 40x20) get the stored image; boxes drawn on the displayed view (annotation
    says 20x40) get the rotated one."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = (255, 0, 0)  # red on the left of the stored pixels
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    im.save(path, exif=exif, quality=95)

    def rec(w, h):
        return ImageRecord(str(path), "r", w, h, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                           np.zeros(0, bool), source="test")

    as_stored = load_sample(rec(40, 20)).image
    assert as_stored.shape == (20, 40, 3) and as_stored[10, 2, 0] > 200
    as_displayed = load_sample(rec(20, 40)).image
    assert as_displayed.shape == (40, 20, 3) and as_displayed[2, 10, 0] > 200  # red now on top
    ds = DetectionDataset([rec(33, 33)], transform=None)
    skipped = ds[0]
    assert isinstance(skipped, Skipped)
    assert "rot.jpg: image is 40x20, its annotation (test) says 33x33" in skipped.message


def test_voc_difficult_objects_are_ignored_and_boxes_one_based(tmp_path):
    root = tmp_path / "VOC2007"
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(root / d)
    cv2.imwrite(str(root / "JPEGImages" / "000001.jpg"), np.zeros((50, 80, 3), np.uint8))
    (root / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (root / "Annotations" / "000001.xml").write_text(
        "<annotation><size><width>80</width><height>50</height></size>"
        "<object><name>dog</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax>"
        "<ymax>20</ymax></bndbox></object>"
        "<object><name>cat</name><difficult>0</difficult><bndbox><xmin>11</xmin><ymin>5</ymin><xmax>30</xmax>"
        "<ymax>25</ymax></bndbox></object></annotation>")
    ds = VOCDet(str(root), "test")
    r = ds.records[0]
    assert r.boxes.tolist() == [[0, 0, 10, 20], [10, 4, 30, 25]]  # 1-based inclusive -> xyxy
    assert r.ignore.tolist() == [True, False] and r.labels.tolist() == [12, 8]


def test_data_report_summary():
    r = DataReport()
    assert r.summary() is None and not r
    for k in range(5):
        r.add("inverted boxes", "dropped", f"{k}.xml", "box")
    r.add("unknown classes", "object skipped", "z.xml", "n123")
    lines = r.summary("epoch 1").splitlines()
    assert lines[0] == "epoch 1: 5 inverted boxes (dropped), 1 unknown classes (object skipped)"
    assert lines[1:] == ["  e.g. 0.xml: box", "  e.g. 1.xml: box", "  e.g. 2.xml: box", "  ... and 3 more"]
    assert len(r) == 6 and r.counts["inverted boxes (dropped)"] == 5


def test_val_split_is_class_balanced_complete_and_deterministic(tmp_path):
    import subprocess
    import sys
    from collections import Counter

    root = make_toy_ilsvrc(str(tmp_path / "ilsvrc"), n_train=2, n_val=120, n_negative=0, cls_per_class=2)
    tool = [sys.executable, os.path.join(ROOT, "tools", "make_val_split.py"), root]
    out = subprocess.run(tool, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    sets = os.path.join(root, "ImageSets", "DET")
    first = [open(os.path.join(sets, f"val{k}.txt")).read() for k in (1, 2)]
    synsets = os.path.join(root, "map_det.txt")
    halves = [ILSVRCDet(root, f"val{k}", synsets=synsets) for k in (1, 2)]
    whole = ILSVRCDet(root, "val", synsets=synsets)
    ids = [r.image_id for h in halves for r in h.records]
    assert sorted(ids) == sorted(r.image_id for r in whole.records) and len(set(ids)) == len(ids)
    assert abs(len(halves[0].records) - len(halves[1].records)) <= 12
    counts = [Counter(int(lab) for r in h.records for lab in r.labels) for h in halves]
    for c in set(counts[0]) | set(counts[1]):
        assert abs(counts[0][c] - counts[1][c]) <= 3, (c, counts)
    # the original indices are kept (the blacklist and submissions refer to them)
    index = {r.image_id: r.index for r in whole.records}
    assert all(r.index == index[r.image_id] for h in halves for r in h.records)
    assert subprocess.run(tool, capture_output=True, env={**os.environ, "PYTHONPATH": ROOT}).returncode == 0
    assert [open(os.path.join(sets, f"val{k}.txt")).read() for k in (1, 2)] == first  # deterministic


def test_zoom_moves_each_box_with_what_it_boxes_and_the_device_path_refuses_it():
    image = np.zeros((300, 400, 3), np.uint8)
    image[50:200, 100:300] = 255  # the object: a white rectangle, its box exactly
    t = DetTransform((300,), 400, train=True, flip=0.5, photometric=0.0, zoom=0.4)
    moved = 0
    for seed in range(40):
        t.set_seed(seed)
        out = t(DetSample(image.copy(), np.array([[100, 50, 300, 200]], np.float32), np.array([1]),
                          np.array([False]), "x", (300, 400)))
        x1, y1, x2, y2 = np.round(out.boxes[0]).astype(int)
        assert out.image[y1 + 2:y2 - 2, x1 + 2:x2 - 2].min() > 200  # still the rectangle, all of it
        moved += not np.allclose(out.boxes[0], [100, 50, 300, 200])
    assert 8 <= moved <= 32  # about half the images zoomed
    with pytest.raises(ValueError, match="zoom works with data.decode=cpu"):
        for seed in range(20):  # some draw zooms
            t.set_seed(seed)
            t.plan(DetSample(image, np.array([[100, 50, 300, 200]], np.float32), np.array([1]), np.array([False]),
                             "x", (300, 400)))
    with pytest.raises(ConfigError, match="data.zoom=0.3"):
        build_detection_data(DetDataConfig(format="voc", root="photos", zoom=0.3, decode="device"), train=True)
