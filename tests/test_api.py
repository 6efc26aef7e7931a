"""``Detector`` (detector/api.py) and tools/infer.py on images, globs, videos and cameras, with the
suite's two trained members (tests/conftest.py: confident on their miniature's val images, so that
what two computations are held to agree on is their confident detections)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import assert_same_detections

from core.data import read_image
from core.errors import DataError
from detector import Detections, Detector

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(ROOT, "tools", "infer.py")


@pytest.fixture(scope="module")
def member(members) -> str:
    return members.paths[0]


@pytest.fixture(scope="module")
def image(members) -> np.ndarray:
    """A validation image of the members' miniature (RGB), on which they detect confidently."""
    return read_image(sorted(glob.glob(os.path.join(members.root, "Data", "DET", "val", "*.JPEG")))[0])


def same(a: Detections, b: Detections, tol: float = 0.0) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=tol)
    np.testing.assert_allclose(a.scores, b.scores, atol=tol)
    assert a.labels.tolist() == b.labels.tolist() and a.names == b.names


def parts(d: Detections) -> tuple:
    return d.boxes, d.scores, d.labels


def test_a_file_an_array_a_list_and_a_glob_give_the_same_detections(member, image, tmp_path):
    det = Detector.from_checkpoint(member, device="cpu", batch_size=1)
    path = str(tmp_path / "photo.png")
    cv2.imwrite(path, image[:, :, ::-1])  # PNG: the file decodes to the array's very pixels
    (from_array,) = det(image)
    (from_file,) = det(path)
    listed = det([path, image])
    same(from_array, from_file)
    same(listed[0], from_array)
    same(listed[1], from_array)
    assert from_file.source == path and from_array.source == "" and from_array.size == image.shape[:2]
    (globbed,) = det(str(tmp_path / "*.png"))
    same(globbed, from_array)
    with pytest.raises(DataError, match="no images match"):
        det(str(tmp_path / "*.jpg"))
    with pytest.raises(DataError, match="RGB uint8"):
        det(image.astype(np.float32))


def test_boxes_are_in_the_original_images_pixels_and_sorted(members, member, image):
    from detector.box_ops import iou_xyxy
    from detector.data.ilsvrc import ILSVRCDet

    det = Detector.from_checkpoint(member, device="cpu")
    (d,) = det(image)
    h, w = image.shape[:2]
    assert (d.boxes[:, [0, 2]] <= w + 1e-3).all() and (d.boxes[:, [1, 3]] <= h + 1e-3).all()
    assert (np.diff(d.scores) <= 0).all() and d.names == [["circle", "arrow"][k - 1] for k in d.labels]
    # the confident boxes are the image's objects, in its own pixels (it was detected at 96 px)
    synsets = os.path.join(members.root, "map_det.txt")
    record = ILSVRCDet(members.root, "val", synsets=synsets, blacklist=None).records[0]
    top = d.scores >= 0.5
    assert top.any() and (iou_xyxy(d.boxes[top], record.boxes).max(1) >= 0.5).all()
    high = Detector.from_checkpoint(member, device="cpu", min_score=0.5)
    (fewer,) = high(image)
    assert len(fewer) == top.sum() and (fewer.scores >= 0.5).all()
    entries = d.to_coco(7)
    assert entries[0]["image_id"] == 7 and entries[0]["bbox"][2] == pytest.approx(d.boxes[0, 2] - d.boxes[0, 0],
                                                                                     abs=0.01)


def test_a_batch_gives_each_image_what_it_alone_gets(members, member):
    """Images are batched only with images of the same resized size: no padding enters, so a batch
    detects what each image alone does (to float rounding, which the confident detections stand clear of)."""
    paths = sorted(glob.glob(os.path.join(members.root, "Data", "DET", "val", "*.JPEG")))[:6]
    alone = Detector.from_checkpoint(member, device="cpu", batch_size=1)(paths)
    batched = Detector.from_checkpoint(member, device="cpu", batch_size=4)(paths)
    for a, b in zip(alone, batched):
        assert_same_detections(parts(a), parts(b), min_score=0.3)


def test_an_ensemble_of_one_member_twice_is_that_member(member, image):
    single = Detector.from_checkpoint(member, device="cpu")(image)[0]
    for method in ("shared", "nms", "wbf"):
        twice = Detector.ensemble([member, member], device="cpu", method=method)(image)[0]
        assert_same_detections(parts(single), parts(twice), min_score=0.3)


def test_draw_returns_the_image_with_boxes(member, image):
    det = Detector.from_checkpoint(member, device="cpu")
    (d,) = det(image)
    d = Detections(d.boxes[:1], d.scores[:1], d.labels[:1], d.names[:1], d.size)
    drawn = det.draw(image, d)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, image)
    assert np.array_equal(det.draw(image, Detections(d.boxes[:0], d.scores[:0], d.labels[:0], [], d.size)), image)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_infer_draws_a_video_and_writes_each_frames_detections(member, image, tmp_path):
    clip = str(tmp_path / "clip.mp4")
    h, w = image.shape[:2]
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"mp4v"), 5, (w, h))
    for k in range(4):
        writer.write(np.roll(image, 10 * k, axis=1)[:, :, ::-1].copy())
    writer.release()
    out = run([INFER, member, clip, "--out", str(tmp_path / "out"), "--score", "0", "--no-progress"])
    assert out.returncode == 0, out.stderr[-2000:]
    frames = json.load(open(tmp_path / "out" / "clip.json"))
    assert [f["frame"] for f in frames] == [0, 1, 2, 3] and all(f["detections"] for f in frames)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip_det.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == w
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp.mp4")]
    short = run([INFER, member, clip, "--out", str(tmp_path / "short"), "--max-frames", "2", "--no-progress"])
    assert short.returncode == 0 and len(json.load(open(tmp_path / "short" / "clip.json"))) == 2


def test_a_camera_that_is_not_there_is_one_line(member, tmp_path):
    out = run([INFER, member, "--webcam", "9", "--out", str(tmp_path)])
    assert out.returncode == 2 and out.stderr.startswith("infer: camera 9 could not be opened")
    assert len(out.stderr.strip().splitlines()) == 1


def symmetric(image: np.ndarray) -> np.ndarray:
    half = image[:, : image.shape[1] // 2]
    return np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], axis=1))


def test_flip_tta_of_a_mirror_symmetric_image_gives_mirror_symmetric_boxes(member, image):
    img = symmetric(image)
    det = Detector.from_checkpoint(member, device="cpu", tta=True, tta_scales=[])
    (d,) = det(img)
    top = d.scores >= d.scores[min(9, len(d) - 1)]
    w = img.shape[1]
    mirrored = np.stack([w - d.boxes[:, 2], d.boxes[:, 1], w - d.boxes[:, 0], d.boxes[:, 3]], 1)
    for box, label, score in zip(d.boxes[top], d.labels[top], d.scores[top]):
        partner = (np.abs(mirrored - box).max(1) < 0.5) & (d.labels == label) & (np.abs(d.scores - score) < 1e-4)
        assert partner.any(), (box, label, score)
    (plain,) = Detector.from_checkpoint(member, device="cpu")(img)
    assert len(d) and not np.array_equal(d.boxes, plain.boxes)  # the views were merged, not passed through


def test_a_mirrored_view_runs_the_model_on_the_mirror_image(member, image):
    from detector.box_ops import hflip_xyxy
    from detector.final import load_final
    from detector.inference.predict import Predictor

    predictor = Predictor([load_final(member)[0]])
    sym = symmetric(image)
    h, w = sym.shape[:2]
    img = torch.from_numpy(sym).permute(2, 0, 1).float() / 255  # its mirror image is itself, bit for bit
    (plain,), _ = predictor.detect([img], None, [(h, w)])
    (mirrored,), _ = predictor.detect([img], None, [(h, w)], mirrored=True)
    assert len(plain.scores) and mirrored.labels.tolist() == plain.labels.tolist()
    np.testing.assert_allclose(mirrored.boxes, hflip_xyxy(plain.boxes, w), atol=1e-3, rtol=0)
