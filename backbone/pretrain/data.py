"""ImageNet classification data (ILSVRC2012 CLS-LOC) for pretraining: OpenCV + albumentations.

Layouts read:
- training: class folders ``<root>/<train_dir>/<wnid>/*.JPEG``; classes are the sorted wnids
  (torchvision's ImageFolder order, so torchvision's class indices mean the same);
- validation: class folders likewise, or the official flat folder with
  ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012 ID per line, in file-name order)
  and the synset list that maps IDs to wnids (``map_clsloc.txt`` format: ``wnid id name``; the
  1000-synset list ships with the package as ``backbone/pretrain/map_clsloc.txt``).

Augmentation follows the paper (spec §2): crops of 8-100% of the area with aspect ratio 3/4-4/3,
resized with a randomly chosen interpolation, horizontal flips, photometric distortion. Each
sample's randomness is seeded from (seed, epoch, index), so a run resumed mid-epoch, or split
over processes, sees exactly the augmentations an uninterrupted single-process run sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from core.data import IMAGE_EXTENSIONS, read_image, read_synsets
from core.data_report import DataReport, Skipped
from core.errors import BadImageError, DataError
from core.seeding import epoch_seed, sample_seed

from ..googlenet import IMAGENET_MEAN, IMAGENET_STD
from .device import EncodedCrop, plan_crop
from .photometric import HowardColour, PCALighting

SYNSETS_FILE = os.path.join(os.path.dirname(__file__), "map_clsloc.txt")
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST,
                  "cubic": cv2.INTER_CUBIC}


def _images_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))


def find_classes(split_dir: str) -> list[str]:
    """Sorted class folder names; an empty data set or an empty class folder is a DataError."""
    if not os.path.isdir(split_dir):
        raise DataError(f"{split_dir}: no such folder")
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    if not classes:
        raise DataError(f"{split_dir}: no class folders (expected {split_dir}/<wnid>/<image>.JPEG)")
    for c in classes:
        if not _images_in(os.path.join(split_dir, c)):
            raise DataError(f"{os.path.join(split_dir, c)}: class folder has no images; remove it or add its images")
    return classes


def class_folder_samples(split_dir: str, classes: list[str]) -> list[tuple[str, int]]:
    found = find_classes(split_dir)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{split_dir}: class folder(s) {unknown[:3]} are not among the {len(classes)} training "
                        "classes; validation and training must share their classes")
    index = {c: i for i, c in enumerate(classes)}
    return [(p, index[c]) for c in found for p in _images_in(os.path.join(split_dir, c))]


def official_val_samples(val_dir: str, labels_file: str, synsets_file: str,
                         classes: list[str]) -> list[tuple[str, int]]:
    """The official flat validation folder with its ground-truth IDs (ILSVRC2012 IDs, 1-based)."""
    if not os.path.isfile(labels_file):
        raise DataError(f"{labels_file}: no such validation labels file (data.val_labels)")
    images = _images_in(val_dir) if os.path.isdir(val_dir) else []
    if not images:
        raise DataError(f"{val_dir}: no validation images")
    with open(labels_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if len(ids) != len(images):
        raise DataError(f"{labels_file}: {len(ids)} labels for {len(images)} images in {val_dir}; they must match "
                        "one to one (labels in file-name order)")
    id_to_wnid = {i: w for w, i, _ in read_synsets(synsets_file)}
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for n, (path, raw) in enumerate(zip(images, ids), 1):
        if not raw.isdigit() or int(raw) not in id_to_wnid:
            raise DataError(f"{labels_file}:{n}: label {raw!r} is not an ID in {synsets_file}")
        wnid = id_to_wnid[int(raw)]
        if wnid not in index:
            raise DataError(f"{labels_file}:{n}: class {wnid} (ID {raw}) is not among the training classes")
        samples.append((path, index[wnid]))
    return samples


# -- transforms ----------------------------------------------------------------------------------
Normalisation = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) of 0..1 RGB
IMAGENET_NORM: Normalisation = (IMAGENET_MEAN, IMAGENET_STD)


def photometric_ops(kind: str, jitter: float = 0.4, howard_range: tuple[float, float] = (0.5, 1.5),
                    lighting_std: float = 0.1) -> list[A.BasicTransform]:
    """``howard`` (the paper's: Howard's factors and AlexNet's PCA lighting, ``photometric.py``),
    ``jitter`` (ColorJitter of strength ``jitter``) or ``none``."""
    if kind == "howard":
        return [HowardColour(howard_range), PCALighting(lighting_std)]
    if kind == "jitter":
        return [A.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=0.0, p=0.8)] if jitter else []
    if kind == "none":
        return []
    raise ValueError(f"photometric must be 'howard', 'jitter' or 'none', got {kind!r}")


def train_transform(crop: int, interpolations: tuple[str, ...] = ("linear", "area", "nearest", "cubic"),
                    photometric: list[A.BasicTransform] | None = None, area: tuple[float, float] = (0.08, 1.0),
                    norm: Normalisation = IMAGENET_NORM) -> A.Compose:
    """Paper §6: 8-100% area, aspect 3/4-4/3, a random interpolation, flips, then ``photometric``
    (:func:`photometric_ops`; default ColorJitter 0.4)."""
    crops = [A.RandomResizedCrop((crop, crop), scale=area, ratio=(3 / 4, 4 / 3),
                                 interpolation=INTERPOLATIONS[i]) for i in interpolations]
    ops = [A.OneOf(crops, p=1.0), A.HorizontalFlip(p=0.5)]
    ops += photometric_ops("jitter") if photometric is None else photometric
    ops.append(A.Normalize(mean=norm[0], std=norm[1], max_pixel_value=255.0))
    return A.Compose(ops, save_applied_params=True)  # the draws, for data.decode: device (.device)


def eval_transform(resize: int, crop: int, norm: Normalisation = IMAGENET_NORM) -> A.Compose:
    """Shorter side to ``resize``, centre ``crop`` x ``crop``."""
    return A.Compose([A.SmallestMaxSize(max_size=resize, interpolation=cv2.INTER_LINEAR),
                      A.CenterCrop(crop, crop),
                      A.Normalize(mean=norm[0], std=norm[1], max_pixel_value=255.0)])


def _resize_shorter(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def _five(img: np.ndarray, crop: int) -> list[np.ndarray]:
    """4 corners + centre ``crop`` x ``crop`` crops."""
    h, w = img.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return [img[:crop, :crop], img[:crop, w - crop:], img[h - crop:, :crop], img[h - crop:, w - crop:],
            img[top:top + crop, left:left + crop]]


def ten_crops(img: np.ndarray, resize: int, crop: int) -> list[np.ndarray]:
    """Spec §2: shorter side ``resize``; 4 corners + centre, and their mirrors (10)."""
    five = _five(_resize_shorter(img, resize), crop)
    return five + [c[:, ::-1] for c in five]


def crops_144(img: np.ndarray, scales: tuple[int, ...], crop: int) -> list[np.ndarray]:
    """Spec §2 / paper §7: 4 scales x 3 squares (left/centre/right, or top/centre/bottom) x 6 (4
    corners + centre + the square resized) x 2 mirrors = 144 for 4 scales."""
    out = []
    for side in scales:
        im = _resize_shorter(img, side)
        h, w = im.shape[:2]
        long_axis_w = w >= h
        length = w if long_axis_w else h
        for start in (0, (length - side) // 2, length - side):
            sq = im[:, start:start + side] if long_axis_w else im[start:start + side, :]
            six = _five(sq, crop) + [cv2.resize(sq, (crop, crop), interpolation=cv2.INTER_AREA)]
            out += six + [c[:, ::-1] for c in six]
    return out


def _normalise(crop: np.ndarray, norm: Normalisation = IMAGENET_NORM) -> torch.Tensor:
    x = (crop.astype(np.float32) / 255.0 - np.array(norm[0], np.float32)) / np.array(norm[1], np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


# -- datasets ------------------------------------------------------------------------------------
@dataclass
class Sample:
    # [3, H, W], or [K, 3, H, W] for K test-time crops; data.decode: device, its bytes and draws
    image: torch.Tensor | EncodedCrop
    label: int
    index: int


class ClassificationDataset(Dataset):
    """(path, label) samples -> :class:`Sample`, or :class:`Skipped` for an unreadable image when
    ``on_bad_image="skip"`` (the collate function drops those and its batch's report names them).
    ``decode="device"`` (training transforms only): a sample's image is an :class:`EncodedCrop`,
    which :func:`.device.images_on` decodes and augments where the model runs."""

    def __init__(self, samples: list[tuple[str, int]], transform: A.Compose | None, seed: int = 0,
                 on_bad_image: str = "skip", crops: int = 1, resize: int = 256, crop: int = 224,
                 scales: tuple[int, ...] = (256, 288, 320, 352), norm: Normalisation = IMAGENET_NORM,
                 decode: Literal["cpu", "device"] = "cpu") -> None:
        if on_bad_image not in ("skip", "error"):
            raise ValueError("on_bad_image must be 'skip' or 'error'")
        if crops not in (1, 10, 144):
            raise ValueError(f"crops must be 1, 10 or 144, got {crops}")
        if crops == 144 and len(scales) != 4:
            raise ValueError("144 crops need 4 scales")
        self.samples, self.transform, self.seed, self.on_bad_image = samples, transform, seed, on_bad_image
        self.crops, self.resize, self.crop, self.scales, self.norm = crops, resize, crop, scales, norm
        if decode == "device" and (crops != 1 or transform is None):
            raise ValueError("decode='device' is for the training transform (one random crop an image)")
        self.decode = decode
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample | Skipped:
        path, label = self.samples[index]
        try:
            if self.decode == "device":
                seed = sample_seed(self.seed, self.epoch, index)
                return Sample(plan_crop(self.transform, path, seed, self.norm), label, index)
            img = read_image(path)
        except BadImageError as e:
            if self.on_bad_image == "error":
                raise
            return Skipped(e.path, e.detail)
        if self.crops == 10:
            crops = ten_crops(img, self.resize, self.crop)
            return Sample(torch.stack([_normalise(c, self.norm) for c in crops]), label, index)
        if self.crops == 144:
            crops = crops_144(img, self.scales, self.crop)
            return Sample(torch.stack([_normalise(c, self.norm) for c in crops]), label, index)
        self.transform.set_random_seed(sample_seed(self.seed, self.epoch, index))
        x = self.transform(image=img)["image"]
        return Sample(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), label, index)


@dataclass
class Batch:
    images: torch.Tensor | list[EncodedCrop]  # [B, 3, H, W] or [B, K, 3, H, W]; or data.decode: device's
    labels: torch.Tensor  # [B]
    report: DataReport = field(default_factory=DataReport)  # the unreadable images dropped from this batch

    @property
    def skipped(self) -> int:
        return len(self.report)

    def pin_memory(self) -> Batch:
        """DataLoader(pin_memory=True) pins custom batch types only through this method."""
        images = [e.pin_memory() for e in self.images] if isinstance(self.images, list) else self.images.pin_memory()
        return Batch(images, self.labels.pin_memory(), self.report)


def collate(samples: list[Sample | Skipped]) -> Batch:
    report = DataReport()
    for s in samples:
        if isinstance(s, Skipped):
            report.add("unreadable images", "image skipped", s.path, s.detail)
    good = [s for s in samples if isinstance(s, Sample)]
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), report)
    images = [s.image for s in good]
    labels = torch.tensor([s.label for s in good])
    return Batch(images if isinstance(images[0], EncodedCrop) else torch.stack(images), labels, report)


class EpochSampler(torch.utils.data.Sampler[int]):
    """This process's share of a seeded per-epoch permutation, from ``start`` (for resuming).

    Rank r takes positions r, r + world, ... of each global batch, so that ``world`` processes
    with ``batch // world`` images each see, step for step, the images one process with ``batch``
    sees. The epoch is cut to whole global batches (like drop_last)."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        if global_batch % world:
            raise ValueError(f"the global batch {global_batch} must divide among {world} processes")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.world, self.shuffle = rank, world, shuffle
        self.epoch, self.start_step = 0, 0

    def steps(self) -> int:
        return self.n // self.global_batch

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        order = order[self.start_step * self.global_batch: self.steps() * self.global_batch]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return (self.steps() - self.start_step) * self.global_batch // self.world
