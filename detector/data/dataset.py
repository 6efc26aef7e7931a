"""From an index of :class:`ImageRecord` s to batches: decode, transform, collate, and group by
aspect ratio. Bad images never end an epoch: they are skipped, counted and named."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from core.data import read_image
from core.data_report import Skipped
from core.errors import BadImageError
from core.seeding import epoch_seed, sample_seed

from ..box_ops import clip_xyxy
from .device import Encoded, decode_to, read_encoded, size_mismatch
from .proposals import RecordProposals
from .sample import DataReport, DetSample, ImageRecord
from .transforms import DetTransform, resized_size

UNREADABLE = "unreadable or mismatched images"


def load_sample(rec: ImageRecord) -> DetSample:
    """Decode ``rec`` consistently with how its boxes were drawn: annotations give the size of the
    stored pixel array, so EXIF orientation is applied only when it is the rotated view that
    matches the annotated size. Raises BadImageError naming the file."""
    img = read_image(rec.path, exif_orientation=False)
    h, w = img.shape[:2]
    if (h, w) != (rec.height, rec.width):
        rotated = read_image(rec.path, exif_orientation=True)
        if rotated.shape[:2] == (rec.height, rec.width):
            img = rotated  # annotated on the EXIF-rotated view
        else:
            raise size_mismatch(rec, w, h)
    # the record keeps boxes as annotated (scoring); the model trains on them clipped to the image
    return DetSample(img, clip_xyxy(rec.boxes, rec.height, rec.width), rec.labels.copy(), rec.ignore.copy(),
                     rec.image_id, (rec.height, rec.width))


def load_encoded(rec: ImageRecord) -> tuple[DetSample, Encoded]:
    """``data.decode: device``: the sample as :func:`load_sample` gives it, but for its image, a
    blank of the annotated size, and the file's bytes (:mod:`.device`). Raises BadImageError."""
    data, exif = read_encoded(rec)
    blank = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (rec.height, rec.width, 3))
    sample = DetSample(blank, clip_xyxy(rec.boxes, rec.height, rec.width), rec.labels.copy(), rec.ignore.copy(),
                       rec.image_id, (rec.height, rec.width))
    return sample, Encoded(rec.path, data, (rec.height, rec.width), exif)


class DetectionDataset(Dataset):
    """``proposals``: each record's external region proposals (:mod:`.proposals`), carried by
    its sample through the same transforms as its boxes. ``decode="device"``: a sample's image is
    an :class:`Encoded` (its bytes, and what the transform drew for its pixels), which
    :func:`images_to` decodes where the model runs; boxes are the same as with ``"cpu"``."""

    def __init__(self, records: list[ImageRecord], transform: DetTransform | None, seed: int = 0,
                 proposals: RecordProposals | None = None, decode: Literal["cpu", "device"] = "cpu") -> None:
        self.records, self.transform, self.seed, self.proposals = records, transform, seed, proposals
        self.decode = decode
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> DetSample | Skipped:
        rec = self.records[index]
        try:
            sample, encoded = load_encoded(rec) if self.decode == "device" else (load_sample(rec), None)
        except BadImageError as e:
            return Skipped(e.path, e.detail)
        if self.proposals is not None:
            sample.proposals = self.proposals[index]
        if self.transform is not None:
            self.transform.set_seed(sample_seed(self.seed, self.epoch, index))
            if encoded is None:
                sample = self.transform(sample)
            else:
                sample, plan = self.transform.plan(sample)
                encoded = replace(plan, path=encoded.path, data=encoded.data, exif=encoded.exif)
        if encoded is not None:
            sample.image = encoded
        sample.position = index
        return sample

    def aspect_ratios(self) -> list[float]:
        """From the annotations: no image is decoded."""
        return [r.aspect for r in self.records]


@dataclass
class DetBatch:
    # [3, H, W] uint8 RGB, sizes vary: a quarter of float32's bytes through the loader workers'
    # shared memory and the copy to the GPU (:func:`images_to` makes them float there); or, with
    # data.decode: device, each image's file bytes and its augmentation (:class:`Encoded`)
    images: list[torch.Tensor] | list[Encoded]
    targets: list[dict]  # boxes [N, 4] xyxy, labels [N], ignore [N], image_id, orig_size, size
    report: DataReport  # what this batch skipped

    def pin_memory(self) -> DetBatch:
        """DataLoader(pin_memory=True) pins custom batch types only through this method."""
        return DetBatch([im.pin_memory() for im in self.images], self.targets, self.report)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 ``[H, W, 3]`` -> float ``[3, H, W]`` in 0..1, what the detector takes."""
    return to_uint8_tensor(image).float().div_(255.0)


def to_uint8_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 ``[H, W, 3]`` -> uint8 ``[3, H, W]``, contiguous (what a batch carries)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def images_to(images: list[torch.Tensor] | list[Encoded], device: torch.device,
              non_blocking: bool = False) -> list[torch.Tensor]:
    """A batch's images on ``device`` as the detector takes them (float ``[3, H, W]`` in 0..1):
    uint8 is converted there, after the copy; float images pass as they are; encoded images
    (``data.decode: device``) are decoded and augmented there (:func:`.device.decode_to`)."""
    if images and isinstance(images[0], Encoded):
        return decode_to(images, device)
    out = []
    for im in images:
        im = im.to(device, non_blocking=non_blocking)
        out.append(im.float().div_(255.0) if im.dtype == torch.uint8 else im)
    return out


def proposals_of(batch_targets: list[dict], device: torch.device) -> list[torch.Tensor] | None:
    """A batch's external region proposals (``[P, 4]`` per image, in its resized pixels), or None
    when it carries none."""
    if not batch_targets or "proposals" not in batch_targets[0]:
        return None
    return [t["proposals"].to(device) for t in batch_targets]


def to_target(s: DetSample) -> dict:
    extra = {} if s.proposals is None else {
        "proposals": torch.from_numpy(np.ascontiguousarray(s.proposals, np.float32)).reshape(-1, 4)}
    return {**extra, "boxes": torch.from_numpy(np.ascontiguousarray(s.boxes, np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(s.labels, np.int64)),
            "ignore": torch.from_numpy(np.ascontiguousarray(s.ignore, bool)),
            "image_id": s.image_id, "orig_size": s.orig_size, "size": s.image.shape[:2], "position": s.position}


def collate(items: list[DetSample | Skipped]) -> DetBatch:
    report = DataReport()
    images, targets = [], []
    for it in items:
        if isinstance(it, Skipped):
            report.add(UNREADABLE, "image skipped", it.path, it.detail)
            continue
        images.append(it.image if isinstance(it.image, Encoded) else to_uint8_tensor(it.image))
        targets.append(to_target(it))
    return DetBatch(images, targets, report)


class GroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of images of similar aspect ratio (landscape with landscape, portrait with portrait),
    so padded batches waste little; a seeded permutation per epoch, sharded over processes first.

    Grouping uses the annotations' sizes: no image is decoded."""

    def __init__(self, aspect_ratios: list[float], batch_size: int, seed: int = 0, rank: int = 0, world: int = 1,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        self.groups = np.array([0 if a >= 1.0 else 1 for a in aspect_ratios])
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch, self.start_step = 0, 0  # start_step: batches to skip (resuming mid-epoch)

    def _indices(self, rank: int) -> list[int]:
        n = len(self.groups)
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        usable = n - n % self.world if self.world > 1 else n  # every process the same count
        return order[:usable][rank::self.world]

    def _batches(self, rank: int):
        buckets: dict[int, list[int]] = {0: [], 1: []}
        for i in self._indices(rank):
            b = buckets[int(self.groups[i])]
            b.append(i)
            if len(b) == self.batch_size:
                yield list(b)
                b.clear()
        if not self.drop_last:  # the remainders, still one orientation per batch
            for b in buckets.values():
                if b:
                    yield list(b)

    def _count(self, rank: int) -> int:
        counts = np.bincount(self.groups[self._indices(rank)], minlength=2)
        full = int(sum(c // self.batch_size for c in counts))
        return full if self.drop_last else full + int(sum(c % self.batch_size > 0 for c in counts))

    def _limit(self) -> int:
        """Batches per process this epoch: under DDP every process must take the same number of
        steps (or the gradient all-reduce waits forever), so all stop at the smallest count."""
        return min(self._count(r) for r in range(self.world))

    def __iter__(self):
        limit = self._limit()
        for k, b in enumerate(self._batches(self.rank)):
            if k >= limit:
                break
            if k >= self.start_step:
                yield b

    def __len__(self) -> int:
        return max(0, self._limit() - self.start_step)


# torchvision's GeneralizedRCNNTransform pads a batch to its largest image, rounded up to this
# (``size_divisible``); a lone image is padded the same way.
PAD_STRIDE = 32


def shape_batches(records: list[ImageRecord], short: int, max_size: int, batch_size: int,
                  stride: int = PAD_STRIDE) -> list[list[int]]:
    """Evaluation batches whose images are padded exactly as each would be alone: grouped by
    the size they are resized to, rounded up to ``stride``. Padding an image beyond that (a
    portrait image to a landscape one's width) moves its features near the right and bottom
    edges (the padding is the mean colour, the convolutions' own border is zeros of the
    features) and adds anchors over the padding; within a group a batch computes what batch size
    1 computes. Record order within a group, groups in order of first appearance; sizes come from
    the annotations, nothing is decoded."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(records):
        h, w = resized_size(r.height, r.width, short, max_size)
        groups.setdefault((-(-h // stride), -(-w // stride)), []).append(i)
    return [g[k:k + batch_size] for g in groups.values() for k in range(0, len(g), batch_size)]
