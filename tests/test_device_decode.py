"""``data.decode: device`` run on the CPU, against the OpenCV path (``data.decode: cpu``): the same
random draws and the same boxes, pixels within the decoders' and resize filters' differences,
EXIF-rotated, PNG and greyscale files, bad files, and a training run through a loader worker."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import read_image
from core.data_report import Skipped
from core.errors import BadImageError
from detector.data import COCODet, ImageRecord, VOCDet
from detector.data.dataset import DetectionDataset, collate, images_to
from detector.data.device import Encoded, decode_to, read_encoded
from detector.data.toy import make_toy_ilsvrc
from detector.data.transforms import DetTransform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not beside the checkout")
CPU = torch.device("cpu")


def pair(records: list[ImageRecord], train: bool, epoch: int = 0) -> tuple[list, list]:
    """The samples of ``records`` through both paths, from the same seed."""
    out = []
    for decode in ("cpu", "device"):
        transform = (DetTransform((320, 480), 1000, train=True, flip=0.5, photometric=0.2) if train
                     else DetTransform((400,), 1000, train=False))
        ds = DetectionDataset(records, transform, seed=7, decode=decode)
        ds.epoch = epoch
        out.append([ds[i] for i in range(len(records))])
    return out[0], out[1]


def levels(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two float images in 0..1, in 8-bit levels."""
    return float((a - b).abs().mean()) * 255


@needs_shared
@pytest.mark.parametrize("epoch", [0, 1])
def test_the_device_path_draws_and_moves_the_boxes_exactly_as_the_opencv_path(epoch):
    records = VOCDet(os.path.join(SHARED, "raccoon"), "train", classes=("raccoon",)).records[:24]  # real photos
    cpu, device = pair(records, train=True, epoch=epoch)
    for c, d in zip(cpu, device):
        assert isinstance(d.image, Encoded) and d.image.shape == c.image.shape
        assert len(c.boxes) >= 1 and np.array_equal(d.boxes, c.boxes) and np.array_equal(d.labels, c.labels)
    plans = [d.image for d in device]
    assert 0 < sum(p.flip for p in plans) < len(plans) and 0 < sum(p.jitter is not None for p in plans) < len(plans)
    assert len({p.size for p in plans}) > 2  # both scales drawn, on photos of many shapes
    # the pixels: the same mirror and colour, up to the resize filters (INTER_AREA / antialiased
    # bilinear) and uint8 rounding between the colour steps
    ours, theirs = images_to(collate(device).images, CPU), images_to(collate(cpu).images, CPU)
    for p, a, b in zip(plans, ours, theirs):
        assert levels(a, b) < 2.5, p.path
        if p.flip:  # what a wrong mirror would have cost: the test sees it
            assert levels(decode_to([dataclasses.replace(p, flip=False)], CPU)[0], b) > 2.5, p.path


@needs_shared
def test_decoded_pixels_are_within_2_of_opencv_and_evaluation_sizes_equal():
    records = (VOCDet(os.path.join(SHARED, "raccoon"), "val", classes=("raccoon",)).records[:12]
               + COCODet(os.path.join(SHARED, "tiny_coco", "annotations", "instances_val2017.json"),
                         os.path.join(SHARED, "tiny_coco", "val2017")).records[:12])
    for r in records:
        data, exif = read_encoded(r)
        (mine,) = decode_to([Encoded(r.path, data, (r.height, r.width), exif)], CPU)
        theirs = torch.from_numpy(read_image(r.path, exif_orientation=exif)).permute(2, 0, 1).float() / 255
        assert mine.shape == theirs.shape and float((mine - theirs).abs().max()) * 255 <= 2.0 + 1e-3, r.path
    cpu, device = pair(records, train=False)
    assert [d.image.shape for d in device] == [c.image.shape for c in cpu]
    assert sum(len(c.boxes) for c in cpu) > 50
    assert all(np.array_equal(d.boxes, c.boxes) and not d.image.flip and d.image.jitter is None
               for c, d in zip(cpu, device))


def record(path: str, height: int, width: int) -> ImageRecord:
    return ImageRecord(path, os.path.basename(path), width, height, np.array([[10, 20, 60, 70]], np.float32),
                       np.array([1]), np.array([False]), source="test")


def test_exif_rotated_png_and_greyscale_files_decode_as_opencv_decodes_them(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))  # 96x128
    rotated = Image.fromarray(smooth)
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored 128 wide; shown (and annotated) rotated, 96 wide and 128 high
    rotated.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    Image.fromarray(smooth).save(tmp_path / "plain.png")
    Image.fromarray(smooth[..., 1]).save(tmp_path / "grey.jpg", quality=95)
    records = [record(str(tmp_path / "rotated.jpg"), 128, 96), record(str(tmp_path / "plain.png"), 96, 128),
               record(str(tmp_path / "grey.jpg"), 96, 128)]
    cpu, device = pair(records, train=False)
    assert [d.image.exif for d in device] == [True, False, False]
    ours, theirs = images_to(collate(device).images, CPU), images_to(collate(cpu).images, CPU)
    for r, a, b in zip(records, ours, theirs):
        assert a.shape == b.shape and levels(a, b) < 1.5, r.path


def test_a_file_that_is_no_image_is_skipped_and_a_corrupt_body_is_named(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    noise = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "cut.jpg", quality=90)
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])  # the header whole, the scan cut short
    ds = DetectionDataset([record(str(tmp_path / "notes.jpg"), 96, 128), record(str(tmp_path / "cut.jpg"), 96, 128)],
                          DetTransform((96,), 200, train=False), decode="device")
    skipped, cut = ds[0], ds[1]
    assert isinstance(skipped, Skipped) and skipped.path.endswith("notes.jpg")
    batch = collate([skipped, cut])
    assert len(batch.report.items) == 1 and len(batch.images) == 1
    # the worker reads headers only; the batch's decode finds the cut scan and names the file
    with pytest.raises(BadImageError) as e:
        images_to(batch.images, CPU)
    assert e.value.path.endswith("cut.jpg") and "data.decode=cpu skips" in str(e.value)


def test_training_with_device_decoding_through_a_loader_worker_learns_the_same_first_step(tmp_path):
    root = make_toy_ilsvrc(str(tmp_path / "ilsvrc"), n_train=8, n_val=4, n_negative=0, cls_per_class=1)
    losses = {}
    for decode in ("cpu", "device"):
        work = tmp_path / decode
        args = [os.path.join(ROOT, "tools", "train_det.py"), "configs/toy_det.yaml", f"data.root={root}",
                "data.toy=false", f"work_dir={work}", "model.weights=null", "data.workers=1", "data.scales=[96,128]",
                "data.test_scale=96", "data.max_size=160", "batch_size=2", "epochs=1", "max_steps=2",
                "progress=false", "model.rpn_post_nms_top_n_train=32", "model.box_batch_size_per_image=16",
                "model.rpn_post_nms_top_n_test=16", f"data.decode={decode}"]
        out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": ROOT})
        assert out.returncode == 0, out.stderr[-2000:]
        (log,) = glob.glob(str(work / "**" / "log.jsonl"), recursive=True)
        steps = [json.loads(line) for line in open(log) if '"loss"' in line]
        losses[decode] = steps[0]["loss"]
    # the same images, boxes and sampled regions; pixels differ by the resize filter only
    assert losses["device"] == pytest.approx(losses["cpu"], rel=0.05)


# -- pretraining ---------------------------------------------------------------------------------
@needs_shared
@pytest.mark.parametrize("photometric", ["howard", "jitter"])
def test_pretraining_crops_on_the_device_are_the_cpu_paths_draws_and_pixels(photometric):
    import cv2

    from backbone.pretrain.data import ClassificationDataset, collate, photometric_ops, train_transform
    from backbone.pretrain.device import images_on
    from core.seeding import sample_seed

    photos = sorted(glob.glob(os.path.join(SHARED, "tiny_coco", "train2017", "*.jpg")))[:16]
    samples = [(p, k % 3) for k, p in enumerate(photos)]
    make = lambda: train_transform(64, ("linear", "area", "nearest", "cubic"), photometric_ops(photometric))  # noqa: E731
    cpu, device = ClassificationDataset(samples, make(), seed=3), ClassificationDataset(samples, make(), seed=3,
                                                                                       decode="device")
    plans = [device[k].image for k in range(len(samples))]
    reference = make()
    for k, (p, plan) in enumerate(zip(photos, plans)):  # the draws, from the photo itself on the cpu path
        reference.set_random_seed(sample_seed(3, 0, k))
        drawn = dict(reference(image=read_image(p))["applied_transforms"])
        assert plan.box == tuple(drawn["RandomResizedCrop"]["crop_coords"]) and plan.flip == ("HorizontalFlip" in drawn)
        assert plan.interpolation == drawn["RandomResizedCrop"]["interpolation"]
        assert [n for n, _ in plan.colour] == [n for n in drawn if n in ("HowardColour", "PCALighting", "ColorJitter")]
    assert {p.interpolation for p in plans} == {cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_CUBIC}
    ours = images_on(collate([device[k] for k in range(len(samples))]).images, CPU)
    theirs = collate([cpu[k] for k in range(len(samples))]).images
    for plan, a, b in zip(plans, ours, theirs):  # normalised by ImageNet's std: back to 8-bit levels
        off = float(((a - b) * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)).abs().mean()) * 255
        # INTER_AREA against antialiased bilinear: a few levels on a strong shrink; the rest, rounding
        assert off < (6.0 if plan.interpolation == cv2.INTER_AREA else 1.0), (plan.path, plan.interpolation)


def test_howards_operations_in_torch_equal_opencvs():
    from backbone.pretrain.device import enhance
    from backbone.pretrain.photometric import HOWARD_OPS
    from backbone.pretrain.photometric import enhance as enhance_cv

    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for op in HOWARD_OPS:
        for f in (0.5, 0.83, 1.37):
            ours = enhance(torch.from_numpy(image).permute(2, 0, 1), op, f).permute(1, 2, 0).numpy().astype(int)
            assert np.abs(ours - enhance_cv(image, op, f).astype(int)).max() <= 1, (op, f)


def test_pretraining_with_device_decoding_through_a_loader_worker(tmp_path):
    from core.miniature import make_toy_imagenet

    toy = make_toy_imagenet(tmp_path / "toy", n_train=8, n_val=3, size=40, seed=0)
    losses = {}
    for decode in ("cpu", "device"):
        args = [os.path.join(ROOT, "tools", "pretrain_backbone.py"), "configs/pretrain_toy.yaml", f"data.root={toy}",
                "data.toy=false", f"work_dir={tmp_path / decode}", "name=t", "data.crop=32", "data.resize=36",
                "data.scales=[36, 40, 44, 48]", "data.workers=1", "batch_size=8", "epochs=1", "max_steps=2",
                "progress=false", f"data.decode={decode}"]
        out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": ROOT})
        assert out.returncode == 0, out.stderr[-2000:]
        steps = [json.loads(line) for line in open(tmp_path / decode / "t" / "log.jsonl") if '"loss"' in line]
        losses[decode] = steps[0]["loss"]
    assert losses["device"] == pytest.approx(losses["cpu"], rel=0.02)
