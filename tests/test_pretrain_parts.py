"""Pretraining parts: schedule, test-time crops, data readers and their errors."""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from backbone.pretrain.data import (
    ClassificationDataset,
    EpochSampler,
    class_folder_samples,
    collate,
    crops_144,
    eval_transform,
    find_classes,
    official_val_samples,
    ten_crops,
)
from backbone.pretrain.engine import Schedule, evaluate, topk_correct
from core.data import read_image
from core.errors import BadImageError, DataError


# -- learning rate ------------------------------------------------------------------------------
def test_step_schedule_096_every_8_epochs():
    s = Schedule(base_lr=0.08, epochs=250, steps_per_epoch=100, kind="step")
    assert s.lr_at(0) == pytest.approx(0.08)
    assert s.lr_at(799) == pytest.approx(0.08)  # epoch 7.99
    assert s.lr_at(800) == pytest.approx(0.08 * 0.96)  # epoch 8
    assert s.lr_at(2450) == pytest.approx(0.08 * 0.96**3)  # epoch 24.5
    assert s.lr_at(100 * 248) == pytest.approx(0.08 * 0.96**31)


def test_poly_schedule_and_warmup():
    s = Schedule(base_lr=0.04, epochs=60, steps_per_epoch=10, kind="poly", power=0.5)
    assert s.lr_at(0) == pytest.approx(0.04)
    assert s.lr_at(300) == pytest.approx(0.04 * math.sqrt(0.5))  # half way
    assert s.lr_at(600) == 0.0
    w = Schedule(base_lr=0.04, epochs=60, steps_per_epoch=10, kind="step", warmup_epochs=2)
    assert w.lr_at(0) == 0.0 and w.lr_at(5) == pytest.approx(0.04 * 0.25) and w.lr_at(20) == pytest.approx(0.04)
    with pytest.raises(ValueError):
        Schedule(0.1, 1, 1, kind="cosine").lr_at(0)


def test_learning_rate_scales_with_the_global_batch():
    from backbone.pretrain.config import OptimConfig, build_optimizer

    model = nn.Linear(3, 2)
    o = OptimConfig(lr=0.01, lr_reference_batch=32)
    opt = build_optimizer(model, o, o.lr * 256 / o.lr_reference_batch)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.08)
    # weight decay on weights, none on biases (Caffe's decay_mult 0)
    assert opt.param_groups[0]["weight_decay"] == 2e-4 and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[1]["params"][0] is model.bias


# -- test-time crops ----------------------------------------------------------------------------
def quadrant_image(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2:] = (0, 255, 0)
    img[h // 2:, : w // 2] = (0, 0, 255)
    img[h // 2:, w // 2:] = (255, 255, 255)
    return img


def test_ten_crops_are_corners_centre_and_mirrors():
    img = quadrant_image(256, 384)
    crops = ten_crops(img, resize=256, crop=224)
    assert len(crops) == 10 and all(c.shape == (224, 224, 3) for c in crops)
    assert tuple(crops[0][0, 0]) == (255, 0, 0)  # top-left corner crop starts at the red quadrant
    assert tuple(crops[1][0, -1]) == (0, 255, 0)  # top-right
    assert tuple(crops[2][-1, 0]) == (0, 0, 255)  # bottom-left
    assert tuple(crops[3][-1, -1]) == (255, 255, 255)  # bottom-right
    for a, b in zip(crops[:5], crops[5:]):
        assert np.array_equal(a[:, ::-1], b)


@pytest.mark.parametrize("h,w", [(200, 600), (600, 200), (256, 256)])
def test_144_crops(h, w):
    img = quadrant_image(h, w)
    crops = crops_144(img, scales=(256, 288, 320, 352), crop=224)
    assert len(crops) == 144 and all(c.shape == (224, 224, 3) for c in crops)
    # per scale: 3 squares x (6 crops + their 6 mirrors)
    for s in range(4):
        for q in range(3):
            block = crops[s * 36 + q * 12: s * 36 + q * 12 + 12]
            for a, b in zip(block[:6], block[6:]):
                assert np.array_equal(a[:, ::-1], b)
    # the first square of the first scale, resized whole (the 6th crop), shows all four quadrants
    # only for a square image; for a 1:3 landscape one it is the left third: red and blue only
    whole = crops[5]
    colours = {tuple(int(v) for v in px) for px in whole[::8, ::8].reshape(-1, 3)}
    if w > h:
        assert (0, 255, 0) not in colours and (255, 0, 0) in colours
    elif h == w:
        assert {(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)} <= colours


class CropVoter(nn.Module):
    """Scores class 1 for crops whose mean is positive, class 0 otherwise, with confidences that make
    averaging the softmax differ from a majority vote."""

    def forward(self, x):
        positive = (x.mean(dim=(1, 2, 3)) > 0).float()
        logits = torch.stack([(1 - positive) * 0.2, positive * 8.0], dim=1)  # weak 0s, confident 1s
        return logits


def test_multi_crop_evaluation_averages_softmax():
    # 10 crops of which 3 are positive: a majority vote says 0, the averaged softmax says 1
    crops = torch.full((1, 10, 3, 4, 4), -1.0)
    crops[0, :3] = 1.0

    from backbone.pretrain.data import Batch

    class Wrapper(nn.Module):  # evaluate() scores crops with model.backbone
        def __init__(self):
            super().__init__()
            self.backbone = CropVoter()

    batch = Batch(crops, torch.tensor([1]))
    res = evaluate(Wrapper(), [batch], torch.device("cpu"))
    assert res["main_top1"] == 100.0 and "aux1_top1" not in res
    probs = CropVoter()(crops[0]).softmax(1)
    assert probs.mean(0).argmax() == 1 and (probs.argmax(1) == 0).sum() == 7


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    assert topk_correct(logits, torch.tensor([1, 2, 0]), ks=(1, 2)) == [1, 2]


# -- sampling -----------------------------------------------------------------------------------
def test_epoch_sampler_splits_global_batches_and_resumes():
    one = list(EpochSampler(20, global_batch=4, seed=3))
    r0, r1 = EpochSampler(20, 4, 3, rank=0, world=2), EpochSampler(20, 4, 3, rank=1, world=2)
    a, b = list(r0), list(r1)
    for step in range(5):  # each global batch is the union of the ranks' halves
        assert sorted(one[4 * step: 4 * step + 4]) == sorted(a[2 * step: 2 * step + 2] + b[2 * step: 2 * step + 2])
    resumed = EpochSampler(20, 4, 3)
    resumed.start_step = 2
    assert list(resumed) == one[8:]
    other = EpochSampler(20, 4, 3)
    other.epoch = 1
    assert list(other) != one


# -- data readers and bad input ------------------------------------------------------------------
def make_split(root, classes: dict[str, int], size=32):
    for wnid, n in classes.items():
        os.makedirs(root / wnid, exist_ok=True)
        for i in range(n):
            img = np.full((size, size, 3), 40 * i % 255, np.uint8)
            cv2.imwrite(str(root / wnid / f"{wnid}_{i}.JPEG"), img)


def test_image_formats_are_converted(tmp_path):
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((5, 7), 100, np.uint8))
    deep = tmp_path / "d.png"
    cv2.imwrite(str(deep), np.full((5, 7, 3), 40000, np.uint16))
    rgba = tmp_path / "a.png"
    cv2.imwrite(str(rgba), np.dstack([np.full((5, 7, 3), (10, 20, 30), np.uint8), np.full((5, 7), 128, np.uint8)]))
    for p in (gray, deep, rgba):
        img = read_image(str(p))
        assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    assert tuple(read_image(str(rgba))[0, 0]) == (30, 20, 10)  # BGR(A) on disk -> RGB


def test_corrupt_images_are_skipped_and_counted_or_fail_naming_the_file(tmp_path):
    make_split(tmp_path / "train", {"n01": 3, "n02": 3})
    bad = tmp_path / "train" / "n02" / "n02_1.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    (tmp_path / "train" / "n01" / "n01_0.JPEG").write_bytes(b"")  # empty
    classes = find_classes(str(tmp_path / "train"))
    samples = class_folder_samples(str(tmp_path / "train"), classes)
    ds = ClassificationDataset(samples, eval_transform(32, 32))
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch.skipped == 2 and batch.images.shape[0] == 4
    assert sorted(os.path.basename(f.file) for f in batch.report.items) == ["n01_0.JPEG", "n02_1.JPEG"]
    strict = ClassificationDataset(samples, eval_transform(32, 32), on_bad_image="error")
    with pytest.raises(BadImageError, match="n01_0.JPEG: not a decodable image"):
        strict[0]


def test_empty_class_folder_and_missing_split_are_clear_errors(tmp_path):
    make_split(tmp_path / "train", {"n01": 2})
    os.makedirs(tmp_path / "train" / "n02")
    with pytest.raises(DataError, match="n02: class folder has no images"):
        find_classes(str(tmp_path / "train"))
    with pytest.raises(DataError, match="no such folder"):
        find_classes(str(tmp_path / "nope"))
    make_split(tmp_path / "val", {"n03": 1})
    with pytest.raises(DataError, match=r"\['n03'\] are not among the 1 training classes"):
        class_folder_samples(str(tmp_path / "val"), ["n01"])


def test_official_validation_labels(tmp_path):
    val = tmp_path / "val"
    os.makedirs(val)
    for i in range(3):
        cv2.imwrite(str(val / f"ILSVRC2012_val_{i + 1:08d}.JPEG"), np.zeros((8, 8, 3), np.uint8))
    synsets = tmp_path / "map_clsloc.txt"
    synsets.write_text("n02 1 two\nn01 2 one\n")
    labels = tmp_path / "gt.txt"
    labels.write_text("2\n1\n2\n")
    samples = official_val_samples(str(val), str(labels), str(synsets), ["n01", "n02"])
    assert [s[1] for s in samples] == [0, 1, 0]  # ID 2 -> n01 -> class index 0 (sorted wnids)
    labels.write_text("2\n1\n")
    with pytest.raises(DataError, match="2 labels for 3 images"):
        official_val_samples(str(val), str(labels), str(synsets), ["n01", "n02"])
    labels.write_text("2\n7\n1\n")
    with pytest.raises(DataError, match=r"gt.txt:2: label '7' is not an ID"):
        official_val_samples(str(val), str(labels), str(synsets), ["n01", "n02"])
    labels.write_text("2\n1\n1\n")
    with pytest.raises(DataError, match=r"gt.txt:2: class n02 \(ID 1\) is not among the training classes"):
        official_val_samples(str(val), str(labels), str(synsets), ["n01"])


def test_shipped_synset_list_has_the_1000_clsloc_classes():
    from backbone.pretrain.data import SYNSETS_FILE
    from core.data import read_synsets

    synsets = read_synsets(SYNSETS_FILE)
    assert len(synsets) == 1000 and sorted(i for _, i, _ in synsets) == list(range(1, 1001))
    assert len({w for w, _, _ in synsets}) == 1000


def test_training_augmentation_is_deterministic_per_sample(tmp_path):
    from backbone.pretrain.data import train_transform

    make_split(tmp_path / "train", {"n01": 4})
    samples = class_folder_samples(str(tmp_path / "train"), ["n01"])
    a = ClassificationDataset(samples, train_transform(24), seed=5)
    b = ClassificationDataset(samples, train_transform(24), seed=5)
    assert torch.equal(a[2].image, b[2].image)  # same (seed, epoch, index), other instance
    b.epoch = 1
    assert not torch.equal(a[2].image, b[2].image)  # a new epoch draws anew


def test_dataloader_pinning_reaches_both_batch_types(monkeypatch):
    """DataLoader(pin_memory=True) leaves a plain dataclass unpinned unless it has pin_memory();
    pinning needs an accelerator, so Tensor.pin_memory is stubbed to mark what it was called on."""
    from torch.utils.data._utils.pin_memory import pin_memory as loader_pin

    from backbone.pretrain.data import Batch
    from detector.data.dataset import DetBatch
    from detector.data.sample import DataReport

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: pinned.append(self) or self.clone())
    one = DataReport()
    one.add("unreadable images", "image skipped", "a.jpg", "truncated")
    b = loader_pin(Batch(torch.zeros(2, 3, 4, 4), torch.tensor([1, 2]), one))
    assert isinstance(b, Batch) and b.skipped == 1 and len(pinned) == 2
    d = loader_pin(DetBatch([torch.zeros(3, 4, 4), torch.ones(3, 5, 5)], [{"boxes": torch.zeros(0, 4)}] * 2,
                            DataReport()))
    assert isinstance(d, DetBatch) and len(pinned) == 4 and torch.equal(d.images[1], torch.ones(3, 5, 5))


def test_a_batch_with_no_readable_image_is_a_step_that_trains_nothing_in_both_trainers():
    """One step loop (core.trainer.train_steps) under both train_one_epochs: a batch whose every
    image was unreadable advances the position (so an epoch ends at its length and a resumed run
    takes the next batch) without an optimiser step, in pretraining and in detection alike."""
    from backbone.aux import GoogLeNetWithAux
    from backbone.googlenet import googlenet
    from backbone.pretrain.data import Batch
    from backbone.pretrain.engine import train_one_epoch as pretrain_epoch
    from detector.data.dataset import DetBatch
    from detector.data.sample import DataReport
    from detector.engine import train_one_epoch as detector_epoch
    from detector.model import googlenet_faster_rcnn

    torch.manual_seed(0)
    net = googlenet(4, variant="paper", norm="bn", aux=True, aux_pool="adaptive")
    assert isinstance(net, GoogLeNetWithAux)
    full = Batch(torch.rand(2, 3, 64, 64), torch.tensor([0, 1]))
    empty = Batch(torch.empty(0), torch.empty(0, dtype=torch.long))
    steps = []
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    stats = pretrain_epoch(net, [full, empty, full], opt, Schedule(0.01, 1, 3), epoch=0, start_step=0,
                           device=torch.device("cpu"), seed=0, progress=False, on_step=lambda s, st: steps.append(s))
    assert stats["steps_done"] == 3 and steps == [1, 3] and stats["images"] == 4

    det = googlenet_faster_rcnn(2, head="fpn", fpn_channels=32, representation_size=32, trainable_from=None,
                                rpn_post_nms_top_n_train=16, box_batch_size_per_image=8)
    target = {"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([1]),
              "ignore": torch.tensor([False])}
    full = DetBatch([torch.rand(3, 64, 64)], [target], DataReport())
    empty = DetBatch([], [], DataReport())
    steps.clear()
    opt = torch.optim.SGD([p for p in det.parameters() if p.requires_grad], lr=1e-3)
    stats = detector_epoch(det, [empty, full, empty], opt, lambda g: 1e-3, epoch=0, epochs=1, steps_per_epoch=3,
                           start_step=0, device=torch.device("cpu"), seed=0, progress=False,
                           on_step=lambda s, st: steps.append(s))
    assert stats["steps_done"] == 3 and steps == [2] and stats["images"] == 1


def test_a_fresh_start_over_an_older_run_moves_its_files_aside_and_a_resume_goes_on(tmp_path):
    """core.trainer.Trainer, as both trainers use it: a run started afresh (resume=none) in a
    folder that holds an older run moves that run's checkpoints and log.jsonl into a folder of their
    own. Left there, the older run's further checkpoints would be kept and the new run's pruned (by
    global step), and resume=auto would find the older run again; a resumed run goes on in its log."""
    from core.records import read_records
    from core.trainer import Trainer

    def trainer(resume: str, max_steps: int | None = None) -> Trainer:
        net = nn.Linear(2, 1)
        t = Trainer(str(tmp_path), steps_per_epoch=2, epochs=2, max_steps=max_steps, eval_every=1,
                    checkpoint_every_steps=1, keep_checkpoints=1, rank=0, world=1,
                    state={"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)},
                    extra={}, nan_hint="")
        t.resume(resume)
        return t

    def fit(t: Trainer) -> list[int]:
        def train_epoch(e: int, start: int, on_step) -> dict:
            for s in range(start + 1, 3):
                if e * 2 + s > t.total_steps:  # max_steps, where train_steps stops
                    return {"steps_done": s - 1}
                on_step(s, {"epoch": e, "global_step": e * 2 + s, "loss": 1.0})
            return {"steps_done": 2}

        t.fit(train_epoch, lambda e: {})
        t.close()
        return [r["global_step"] for r in read_records(str(tmp_path / "log.jsonl"))]

    assert fit(trainer("auto")) == [1, 2, 3, 4]
    again = trainer("none", max_steps=3)  # afresh over the finished run, and stopped at step 3
    (older,) = tmp_path.glob("older_*")
    assert sorted(p.name for p in older.iterdir()) == ["checkpoint_00000004.pth", "log.jsonl"]
    assert [r["global_step"] for r in read_records(str(older / "log.jsonl"))] == [1, 2, 3, 4]
    assert fit(again) == [1, 2, 3]
    assert [p.name for p in tmp_path.glob("checkpoint_*.pth")] == ["checkpoint_00000003.pth"]
    resumed = trainer("auto")  # from this run's step 3 (epoch 2, step 1), in the same log
    assert (resumed.epoch, resumed.step) == (1, 1) and len(list(tmp_path.glob("older_*"))) == 1
    assert fit(resumed) == [1, 2, 3, 4]
