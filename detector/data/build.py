"""The detection configs' ``data`` section, and the one function that turns it into a dataset."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from core.errors import DataError

from .coco import COCODet
from .dataset import DetectionDataset
from .ilsvrc import BLACKLIST_NAME, MAP_DET, ILSVRCDet
from .toy import make_toy_ilsvrc
from .transforms import DetTransform
from .voc import VOCDet


@dataclass
class DetDataConfig:
    format: Literal["ilsvrc", "voc", "coco"] = "ilsvrc"
    root: str = "data/ILSVRC"  # ilsvrc: the folder holding Data/, Annotations/, ImageSets/; voc: VOC20XX
    toy: bool = False  # make the miniature ILSVRC at root on first use
    train_split: str = "train"  # ilsvrc: train | val1 ...; voc: trainval ...; coco: train2017 ...
    val_split: str = "val2"
    synsets: str | None = None  # ilsvrc: wnid list (default: <root>/map_det.txt if there, else the shipped 200)
    blacklist: str | None = None  # ilsvrc: (image index, wnid) pairs not scored; relative to root
    negatives: float = 0.0  # ilsvrc: share of the negative training images to include
    extra_train_splits: list[str] = field(default_factory=list)  # e.g. [val1] beside train (R-CNN's practice)
    coco_annotations: str = "annotations/instances_{split}.json"  # coco: relative to root
    coco_images: str = "{split}"  # coco: image folder relative to root
    scales: list[int] = field(default_factory=lambda: [480, 576, 688, 864])  # training: shorter side, one per image
    test_scale: int = 600
    max_size: int = 1000  # cap on the longer side
    flip: float = 0.5
    photometric: float = 0.2
    workers: int = 4


def _index(cfg: DetDataConfig, split: str, seed: int):
    root = cfg.root
    if cfg.format == "ilsvrc":
        own = os.path.join(root, "map_det.txt")  # a data set that carries its own synset list (the miniature)
        synsets = cfg.synsets or (own if os.path.isfile(own) else MAP_DET)
        if cfg.blacklist:
            blacklist = os.path.join(root, cfg.blacklist)
        elif cfg.toy:
            blacklist = os.path.join(root, "det_validation_blacklist.txt")
        else:
            blacklist = os.path.join(root, BLACKLIST_NAME) if os.path.isfile(os.path.join(root, BLACKLIST_NAME)) else None
        return ILSVRCDet(root, split, synsets=synsets, negatives=cfg.negatives, blacklist=blacklist, seed=seed)
    if cfg.format == "voc":
        return VOCDet(root, split)
    return COCODet(os.path.join(root, cfg.coco_annotations.format(split=split)),
                   os.path.join(root, cfg.coco_images.format(split=split)))


def build_detection_data(cfg: DetDataConfig, train: bool, seed: int = 0):
    """``(dataset, index)``: the training split (plus ``extra_train_splits``) with training transforms,
    or the validation split with the fixed test scale. ``index`` has ``classes``, ``class_names``
    and the parse ``report``."""
    if cfg.toy and cfg.format == "ilsvrc":
        make_toy_ilsvrc(cfg.root, seed=0)
    if not os.path.isdir(cfg.root):
        raise DataError(f"no {cfg.format.upper()} data at {cfg.root}: point data.root=... at it"
                        + (", or make the miniature: python tools/make_toy_data.py" if cfg.format == "ilsvrc" else ""))
    splits = [cfg.train_split, *cfg.extra_train_splits] if train else [cfg.val_split]
    index = _index(cfg, splits[0], seed)
    for extra in splits[1:]:
        more = _index(cfg, extra, seed)
        index.records += more.records
        index.report.merge(more.report)
    transform = (DetTransform(tuple(cfg.scales), cfg.max_size, train=True, flip=cfg.flip, photometric=cfg.photometric)
                 if train else DetTransform((cfg.test_scale,), cfg.max_size, train=False))
    return DetectionDataset(index.records, transform, seed=seed), index
