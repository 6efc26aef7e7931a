"""The detection configs' ``data`` section, and the one function that turns it into a dataset."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Literal

from core.config import ConfigError
from core.data import configured_path, first_file
from core.errors import DataError
from core.records import log

from .coco import COCODet
from .ilsvrc import BLACKLIST_NAME, MAP_DET, ILSVRCDet
from .index_cache import default_cache_dir
from .proposals import RecordProposals, aligned, load_proposals
from .toy import make_toy_ilsvrc
from .voc import VOC_CLASSES, VOCDet, class_names_in

# the devkit's name, and the miniature's own (make_toy_ilsvrc)
BLACKLIST_NAMES = (BLACKLIST_NAME, "det_validation_blacklist.txt")


@dataclass
class DetDataConfig:
    format: Literal["ilsvrc", "voc", "coco"] = "ilsvrc"
    root: str = "data/ILSVRC"  # ilsvrc: the folder holding Data/, Annotations/, ImageSets/; voc: VOC20XX
    toy: bool = False  # make the miniature ILSVRC at root on first use
    train_split: str = "train"  # ilsvrc: train | val1 ...; voc: trainval ...; coco: train2017 ...
    val_split: str = "val2"
    # ilsvrc: the devkit's data folder (map_det.txt, the val blacklist); None: <root>/devkit/data, then <root>
    devkit: str | None = None
    synsets: str | None = None  # ilsvrc: wnid list (None: map_det.txt in the devkit, else the shipped 200)
    # voc: the class names, in label order; None: the names the train and val annotations use,
    # sorted (Pascal VOC's own 20 when they are among them), said in the log
    classes: list[str] | None = None
    blacklist: str | None = None  # ilsvrc: (image index, wnid) pairs not scored (None: in the devkit; "none": off)
    negatives: float = 0.0  # ilsvrc: share of the negative training images to include
    extra_train_splits: list[str] = field(default_factory=list)  # e.g. [val1] beside train (R-CNN's practice)
    coco_annotations: str = "annotations/instances_{split}.json"  # coco: relative to root
    coco_images: str = "{split}"  # coco: image folder relative to root
    scales: list[int] = field(default_factory=lambda: [480, 576, 688, 864])  # training: shorter side, one per image
    test_scale: int = 600
    # test-time augmentation (eval_map.py --tta, Detector(tta=True)): these shorter sides besides
    # test_scale, each image seen at each plain and mirrored (detector/tta.py)
    tta_scales: list[int] = field(default_factory=list)
    max_size: int = 1000  # cap on the longer side
    flip: float = 0.5
    photometric: float = 0.2
    # half the training images scaled by 1 +- zoom and shifted by up to zoom/2 of their size, the
    # border filled with the mean colour (zoom-out and zoom-in, as SSD's expansion and crops); cpu decoding
    zoom: float = 0.0
    workers: int = 4
    # cpu: the loader workers decode (OpenCV) and augment (albumentations); device: they read the
    # bytes and draw the augmentation, and the batch is decoded (nvJPEG on a GPU) and augmented
    # where the model runs, with the same boxes (detector/data/device.py, docs/gpu.md)
    decode: Literal["cpu", "device"] = "cpu"
    # model.proposals external | both: a tools/make_proposals.py file per split, "{split}" in the path
    # standing for the split's name (e.g. work_dirs/proposals/ss_{split}.npz)
    proposals: str | None = None
    max_proposals: int = 2000  # the best this many of each image's external proposals
    # ilsvrc: each split's parsed index kept on disk and read back while none of its files changed
    # (detector/data/index_cache.py); auto: $GOOGLENET_DET_CACHE, else ~/.cache/googlenet-det/index;
    # none: parse the XML every time; else a folder
    index_cache: str = "auto"


def devkit_dirs(cfg: DetDataConfig) -> list[str]:
    """Where the ILSVRC devkit's data is looked for, in order: ``data.devkit``, else where the
    2015 tarballs unpack it (``<root>/devkit/data``), then ``<root>`` itself."""
    if cfg.devkit:
        return [configured_path(cfg.devkit, cfg.root, "devkit", folder=True)]
    return [os.path.join(cfg.root, "devkit", "data"), cfg.root]


def ilsvrc_files(cfg: DetDataConfig, split: str) -> tuple[str, str | None]:
    """``(synsets, blacklist)`` of a split: the config's own files when it names them, else the
    devkit's (:func:`devkit_dirs`); the shipped 200-synset list when the devkit has none. A val
    split is not scored without its blacklist (the devkit's numbers leave those pairs out), unless
    ``data.blacklist=none`` says so."""
    synsets = (configured_path(cfg.synsets, cfg.root, "synsets") if cfg.synsets
               else first_file(devkit_dirs(cfg), ("map_det.txt",)) or MAP_DET)
    if split == "train" or (cfg.blacklist or "").lower() == "none":
        return synsets, None
    if cfg.blacklist:
        return synsets, configured_path(cfg.blacklist, cfg.root, "blacklist")
    found = first_file(devkit_dirs(cfg), BLACKLIST_NAMES)
    if found is None and split.startswith("val"):
        looked = " or ".join(devkit_dirs(cfg))
        raise DataError(f"no {BLACKLIST_NAME} in {looked}: get it from the ILSVRC2015 devkit (devkit/data/ of "
                        f"ILSVRC2015_devkit.tar.gz) and put it in {devkit_dirs(cfg)[0]}, or set data.devkit=DIR or "
                        "data.blacklist=FILE (data.blacklist=none scores every pair)")
    return synsets, found


def voc_classes(cfg: DetDataConfig) -> list[str]:
    """``data.classes``, else the names the annotations of the config's splits use (sorted; Pascal
    VOC's 20 when every name is one of them), said once in the log."""
    if cfg.classes:
        return list(cfg.classes)
    splits = list(dict.fromkeys([cfg.train_split, *cfg.extra_train_splits, cfg.val_split]))
    return _classes_found(cfg.root, tuple(splits))


@functools.lru_cache(maxsize=8)
def _classes_found(root: str, splits: tuple[str, ...]) -> list[str]:
    found = class_names_in(root, list(splits))
    if found and set(found) <= set(VOC_CLASSES):
        return list(VOC_CLASSES)
    if not found:
        raise DataError(f"{root}: no object names in the annotations of {', '.join(splits)}; set data.classes=[...]")
    shown = ", ".join(found[:10]) + (f", ... ({len(found)})" if len(found) > 10 else "")
    others = [n for n in found if n not in VOC_CLASSES]  # beside Pascal VOC's own names: a typo?
    odd = f"; not among Pascal VOC's 20: {', '.join(others[:5])}" if len(others) < len(found) else ""
    log(f"data: {len(found)} class(es) from the annotations of {root} ({' + '.join(splits)}), sorted: {shown}{odd} "
        "(data.classes=[...] sets them)", int(os.environ.get("RANK", "0")))
    return found


def _index(cfg: DetDataConfig, split: str, seed: int):
    root = cfg.root
    if cfg.format == "ilsvrc":
        synsets, blacklist = ilsvrc_files(cfg, split)
        cache = {"auto": default_cache_dir(), "none": None}.get(cfg.index_cache.lower(), cfg.index_cache)
        return ILSVRCDet(root, split, synsets=synsets, negatives=cfg.negatives, blacklist=blacklist, seed=seed,
                         cache=cache)
    if cfg.format == "voc":
        return VOCDet(root, split, classes=tuple(voc_classes(cfg)))
    return COCODet(os.path.join(root, cfg.coco_annotations.format(split=split)),
                   os.path.join(root, cfg.coco_images.format(split=split)))


def proposals_file(cfg: DetDataConfig, split: str) -> str:
    """The proposals file of ``split`` (``data.proposals`` with ``{split}`` filled in)."""
    if not cfg.proposals:
        raise ConfigError(f"data.proposals: external proposals need a file per split; make them with "
                          f"python tools/make_proposals.py CONFIG --method ss --split {split} --out FILE and set "
                          "data.proposals=FILE (with {split} in its name for several splits)")
    return cfg.proposals.format(split=split)


def _record_proposals(cfg: DetDataConfig, parts: list[tuple[str, list]]) -> RecordProposals:
    """The proposals of every record of ``parts`` (``(split, records)``), in record order."""
    sources, where = [], []
    for split, records in parts:
        path = proposals_file(cfg, split)
        p = load_proposals(path)
        sources.append(p)
        where += [(len(sources) - 1, row) for row in aligned(path, p, records, split)]
    return RecordProposals(sources, where, cfg.max_proposals)


def build_detection_index(cfg: DetDataConfig, train: bool, seed: int = 0):
    """``(index, parts)``: the training split (plus ``extra_train_splits``, their records appended)
    or the validation split, read without decoding; ``parts``: ``(split, records)`` of each.
    ``index`` has ``records``, ``classes``, ``class_names`` and the parse ``report``."""
    if cfg.classes and cfg.format != "voc":
        raise ConfigError(f"data.classes: for data.format=voc; {cfg.format} takes its classes from "
                          + ("its annotation file's categories" if cfg.format == "coco" else "data.synsets"))
    if cfg.toy and cfg.format == "ilsvrc":
        make_toy_ilsvrc(cfg.root, seed=0)
    if not os.path.isdir(cfg.root):
        raise DataError(f"no {cfg.format.upper()} data at {cfg.root}: point data.root=... at it"
                        + (", or make the miniature: python tools/make_toy_data.py" if cfg.format == "ilsvrc" else ""))
    splits = [cfg.train_split, *cfg.extra_train_splits] if train else [cfg.val_split]
    index = _index(cfg, splits[0], seed)
    parts = [(splits[0], list(index.records))]
    for extra in splits[1:]:
        more = _index(cfg, extra, seed)
        parts.append((extra, list(more.records)))
        index.records += more.records
        index.report.merge(more.report)
    return index, parts


def build_detection_data(cfg: DetDataConfig, train: bool, seed: int = 0, with_proposals: bool = False):
    """``(dataset, index)``: the training split (plus ``extra_train_splits``) with training transforms,
    or the validation split with the fixed test scale (:func:`build_detection_index`).
    ``with_proposals``: each sample carries its external proposals (``data.proposals``)."""
    from .dataset import DetectionDataset
    from .transforms import DetTransform

    if cfg.zoom and cfg.decode == "device":
        raise ConfigError(f"data.zoom={cfg.zoom} works with data.decode=cpu: the device path has no zoom")
    index, parts = build_detection_index(cfg, train, seed)
    proposals = _record_proposals(cfg, parts) if with_proposals else None
    transform = (DetTransform(tuple(cfg.scales), cfg.max_size, train=True, flip=cfg.flip, photometric=cfg.photometric,
                              zoom=cfg.zoom) if train else DetTransform((cfg.test_scale,), cfg.max_size, train=False))
    return DetectionDataset(index.records, transform, seed=seed, proposals=proposals, decode=cfg.decode), index
