"""Where the ImageNet classification data is under ``data.root``, in the layouts it ships in:

- class folders: ``<root>/train/<wnid>/*.JPEG`` and ``<root>/val/<wnid>/*.JPEG`` (torchvision's);
- the ILSVRC 2015 tarballs: ``<root>/Data/CLS-LOC/{train/<wnid>,val}/*.JPEG`` with the devkit in
  ``<root>/devkit/data/`` (``ILSVRC2015_clsloc_validation_ground_truth.txt``, ``map_clsloc.txt``);
- ILSVRC2012's flat ``val/`` with ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt``.

A key the config sets (``train_dir``, ``val_dir``, ``val_labels``, ``synsets``, ``devkit``) wins;
a file it names that is not there is one line naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.data import IMAGE_EXTENSIONS, configured_path, first_file
from core.errors import DataError

TRAIN_DIRS = ("train", os.path.join("Data", "CLS-LOC", "train"))
VAL_DIRS = ("val", os.path.join("Data", "CLS-LOC", "val"))
VAL_LABELS = ("ILSVRC2015_clsloc_validation_ground_truth.txt", "ILSVRC2012_validation_ground_truth.txt")
SYNSETS_NAME = "map_clsloc.txt"


@dataclass
class Layout:
    train_dir: str
    val_dir: str
    val_labels: str | None  # the flat val folder's ground truth (None: class folders)
    synsets: str | None  # the devkit's wnid/ID list for val_labels (None: the shipped one)


def devkit_dirs(root: str, devkit: str | None) -> list[str]:
    if devkit:
        return [configured_path(devkit, root, "devkit", folder=True)]
    return [os.path.join(root, "devkit", "data"), root, os.path.join(root, "ILSVRC2012_devkit_t12", "data")]


def split_dir(root: str, given: str | None, candidates: tuple[str, ...], key: str) -> str | None:
    """The folder ``data.<key>`` names, else the first of ``candidates`` under ``root`` (None: none is there)."""
    if given:
        return configured_path(given, root, key, folder=True)
    return next((os.path.join(root, d) for d in candidates if os.path.isdir(os.path.join(root, d))), None)


def is_flat(folder: str) -> bool:
    """Images directly in ``folder`` and no class folders: the official validation layout."""
    entries = os.listdir(folder)
    return (not any(os.path.isdir(os.path.join(folder, e)) for e in entries)
            and any(e.lower().endswith(IMAGE_EXTENSIONS) for e in entries))


def find_layout(root: str, train_dir: str | None, val_dir: str | None, val_labels: str | None,
                synsets: str | None, devkit: str | None) -> Layout:
    train = split_dir(root, train_dir, TRAIN_DIRS, "train_dir")
    if train is None:
        raise DataError(f"no ImageNet at {root} (looked for {' and '.join(TRAIN_DIRS)} with <wnid>/*.JPEG "
                        "inside): point data.root=... at your ILSVRC2012 CLS-LOC folder (or data.train_dir=...), "
                        "or run the miniature: python tools/pretrain_backbone.py configs/pretrain_toy.yaml")
    val = split_dir(root, val_dir, VAL_DIRS, "val_dir")
    if val is None:
        raise DataError(f"no validation images at {root} (looked for {' and '.join(VAL_DIRS)}): set "
                        "data.val_dir=...")
    kit = devkit_dirs(root, devkit)
    table = configured_path(synsets, root, "synsets") if synsets else first_file(kit, (SYNSETS_NAME,))
    if val_labels:
        return Layout(train, val, configured_path(val_labels, root, "val_labels"), table)
    if not is_flat(val):
        return Layout(train, val, None, table)
    labels = first_file(kit, VAL_LABELS)
    if labels is None:
        raise DataError(f"{val}: a flat validation folder needs its ground truth, {VAL_LABELS[0]} (the ILSVRC2015 "
                        f"devkit's data/) or {VAL_LABELS[1]} (ILSVRC2012_devkit_t12/data/), looked for in "
                        f"{', '.join(kit)}: put it there, or set data.val_labels=FILE or data.devkit=DIR")
    return Layout(train, val, labels, table)
