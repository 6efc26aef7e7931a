"""``Detector`` (detector/api.py) and tools/infer.py on images, globs, videos and cameras, with a
small untrained member (random heads give many boxes; what is tested is the plumbing: inputs,
coordinates, batching, ensembles, outputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from core.errors import DataError
from detector import Detections, Detector
from detector.config import DetConfig, DetModelConfig, build_model
from detector.final import save_final

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(ROOT, "tools", "infer.py")


@pytest.fixture(scope="module")
def member(tmp_path_factory) -> str:
    cfg = DetConfig()
    cfg.model = DetModelConfig(head="fpn", weights=None, variant="paper", norm="bn", trainable_from=None,
                               box_score_thresh=0.0, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                               representation_size=64)
    cfg.data.test_scale, cfg.data.max_size = 96, 160
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("api") / "model_final.pth")
    save_final(path, build_model(cfg.model, 3).eval(), cfg, ["n1", "n2", "n3"], ["ant", "bee", "cat"], {})
    return path


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (12, 20, 3), np.uint8), (200, 120), interpolation=cv2.INTER_NEAREST)
    cv2.circle(img, (60, 50), 25, (250, 30, 30), -1)
    return img


def same(a: Detections, b: Detections, tol: float = 0.0) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=tol)
    np.testing.assert_allclose(a.scores, b.scores, atol=tol)
    assert a.labels.tolist() == b.labels.tolist() and a.names == b.names


def test_a_file_an_array_a_list_and_a_glob_give_the_same_detections(member, image, tmp_path):
    det = Detector.from_checkpoint(member, device="cpu", batch_size=1)
    path = str(tmp_path / "photo.png")
    cv2.imwrite(path, image[:, :, ::-1])
    (from_array,) = det(image)
    (from_file,) = det(path)
    listed = det([path, image])
    same(from_array, from_file)
    same(listed[0], from_array)
    same(listed[1], from_array)
    assert from_file.source == path and from_array.source == "" and from_array.size == (120, 200)
    (globbed,) = det(str(tmp_path / "*.png"))
    same(globbed, from_array)
    with pytest.raises(DataError, match="no images match"):
        det(str(tmp_path / "*.jpg"))
    with pytest.raises(DataError, match="RGB uint8"):
        det(image.astype(np.float32))


def test_boxes_are_in_the_original_images_pixels_and_sorted(member, image):
    det = Detector.from_checkpoint(member, device="cpu")
    (d,) = det(image)
    assert (d.boxes[:, [0, 2]] <= 200 + 1e-3).all() and (d.boxes[:, [1, 3]] <= 120 + 1e-3).all()
    assert d.boxes[:, 2].max() > 160  # the test scale (96 x 160) was undone
    assert (np.diff(d.scores) <= 0).all()
    assert d.names == [["ant", "bee", "cat"][k - 1] for k in d.labels]
    high = Detector.from_checkpoint(member, device="cpu", min_score=float(np.median(d.scores)))
    (fewer,) = high(image)
    assert 0 < len(fewer) < len(d) and (fewer.scores >= np.median(d.scores)).all()
    entries = d.to_coco(7)
    assert entries[0]["image_id"] == 7 and entries[0]["bbox"][2] == pytest.approx(d.boxes[0, 2] - d.boxes[0, 0],
                                                                                     abs=0.01)


def test_a_batch_gives_each_image_what_it_alone_gets(member, image):
    """Images are batched only with images of the same resized size: no padding enters, so the
    detections are batch one's to float rounding."""
    alone = Detector.from_checkpoint(member, device="cpu", batch_size=1)
    batched = Detector.from_checkpoint(member, device="cpu", batch_size=4)
    other = np.ascontiguousarray(image[:100, :150])  # another size: its own group
    inputs = [image, image[:, ::-1].copy(), other, image]
    for a, b in zip(alone(inputs), batched(inputs)):
        assert a.labels[:3].tolist() == b.labels[:3].tolist()
        np.testing.assert_allclose(a.boxes[:3], b.boxes[:3], atol=0.05)  # px, of an untrained net
        np.testing.assert_allclose(a.scores[:3], b.scores[:3], rtol=1e-3)


def test_an_ensemble_of_one_member_twice_is_that_member(member, image):
    single = Detector.from_checkpoint(member, device="cpu")(image)[0]
    for method in ("shared", "nms"):
        twice = Detector.ensemble([member, member], device="cpu", method=method)(image)[0]
        assert twice.labels[:5].tolist() == single.labels[:5].tolist()
        np.testing.assert_allclose(twice.boxes[:5], single.boxes[:5], atol=1e-3)


def test_draw_returns_the_image_with_boxes(member, image):
    det = Detector.from_checkpoint(member, device="cpu")
    (d,) = det(image)
    d = Detections(d.boxes[:3], d.scores[:3], d.labels[:3], d.names[:3], d.size)
    drawn = det.draw(image, d)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, image)
    assert np.array_equal(det.draw(image, Detections(d.boxes[:0], d.scores[:0], d.labels[:0], [], d.size)), image)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_infer_draws_a_video_and_writes_each_frames_detections(member, image, tmp_path):
    clip = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"mp4v"), 5, (200, 120))
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
    assert n == 4 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 200
    assert not [f for f in os.listdir(tmp_path / "out") if f.endswith(".tmp.mp4")]
    short = run([INFER, member, clip, "--out", str(tmp_path / "short"), "--max-frames", "2", "--no-progress"])
    assert short.returncode == 0 and len(json.load(open(tmp_path / "short" / "clip.json"))) == 2


def test_a_camera_that_is_not_there_is_one_line(member, tmp_path):
    out = run([INFER, member, "--webcam", "9", "--out", str(tmp_path)])
    assert out.returncode == 2 and out.stderr.startswith("infer: camera 9 could not be opened")
    assert len(out.stderr.strip().splitlines()) == 1


def symmetric(image: np.ndarray) -> np.ndarray:
    half = image[:, :100]
    return np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], axis=1))


def test_flip_tta_of_a_mirror_symmetric_image_gives_mirror_symmetric_boxes(member, image):
    img = symmetric(image)
    det = Detector.from_checkpoint(member, device="cpu", tta=True, tta_scales=[])
    (d,) = det(img)
    top = d.scores >= d.scores[min(9, len(d) - 1)]
    mirrored = np.stack([200 - d.boxes[:, 2], d.boxes[:, 1], 200 - d.boxes[:, 0], d.boxes[:, 3]], 1)
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
    img = torch.from_numpy(symmetric(image)).permute(2, 0, 1).float() / 255
    (plain,), _ = predictor.detect([img], None, [(120, 200)])
    (mirrored,), _ = predictor.detect([img], None, [(120, 200)], mirrored=True)
    assert mirrored.labels.tolist() == plain.labels.tolist()
    np.testing.assert_allclose(mirrored.boxes, hflip_xyxy(plain.boxes, 200), atol=1e-3, rtol=0)
