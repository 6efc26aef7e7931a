"""A miniature ILSVRC in the real 2015 layout (spec §4): DET with several drawn objects per image
(some under 25x25 px), negatives without XML, its own ``map_det.txt`` and a blacklist; CLS-LOC as
class folders. The classes are those of the miniature ImageNet (``core.miniature``), so a backbone
pretrained on one transfers to the other. Deterministic from the seed; written to a temporary
folder and renamed into place."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np

from core.atomic import publish_dir
from core.miniature import (
    SHAPES,
    TOY_WNIDS,
    background,
    class_color,
    make_toy_imagenet,
    mask_box,
    read_marker,
    shape_angle,
    shape_mask,
)

from ..box_ops import iou_xyxy


def det_image(rng: np.random.Generator, num_classes: int, max_objects: int = 4,
              small_share: float = 0.2) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """One image (RGB) and its objects [(class index, inclusive box)], landscape or portrait.

    Boxes may overlap (up to IoU 0.4, as neighbours do in real photos: a small shape in a ring's
    hole or a crescent's bite, a bar across a corner), but the shapes themselves stay 2 px apart,
    so every box still shows its whole object."""
    w, h = (int(rng.integers(112, 176)), int(rng.integers(88, 128)))
    if rng.random() < 0.3:
        w, h = h, w
    img = background(rng, h, w)
    taken = np.zeros((h, w), np.uint8)  # the pixels of the shapes drawn so far, grown by 2 px
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1)) * 3):  # attempts
        if len(objects) >= max_objects:
            break
        c = int(rng.integers(num_classes))
        small = rng.random() < small_share
        size = rng.uniform(16, 24) if small else rng.uniform(26, 0.6 * min(w, h))
        cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
        color = class_color(rng, c)
        mask = shape_mask(h, w, SHAPES[c], cx, cy, size, angle=shape_angle(rng))
        box = mask_box(mask)
        if box is None or (mask & taken).any():
            continue
        # inclusive pixel boxes + (0, 0, 1, 1) -> xyxy: the devkits' "+1" IoU
        if objects and iou_xyxy(np.add(box, (0, 0, 1, 1)), [np.add(b, (0, 0, 1, 1)) for _, b in objects]).max() > 0.4:
            continue
        img[mask > 0] = color
        taken |= cv2.dilate(mask, np.ones((5, 5), np.uint8))
        objects.append((c, box))
    return img, objects


def _xml(folder: str, name: str, w: int, h: int, objects, wnids) -> str:
    objs = "".join(
        # the real files write bndbox children as xmax, xmin, ymax, ymin: readers must go by tag
        f"\t<object>\n\t\t<name>{wnids[c]}</name>\n\t\t<bndbox>\n\t\t\t<xmax>{b[2]}</xmax>\n\t\t\t<xmin>{b[0]}</xmin>\n"
        f"\t\t\t<ymax>{b[3]}</ymax>\n\t\t\t<ymin>{b[1]}</ymin>\n\t\t</bndbox>\n\t</object>\n" for c, b in objects)
    return (f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{name}</filename>\n\t<source>\n\t\t"
            f"<database>ILSVRC_2014</database>\n\t</source>\n\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n"
            f"\t</size>\n{objs}</annotation>\n")


def _write_split(tmp: str, split: str, n: int, negatives: int, rng: np.random.Generator,
                 wnids: tuple[str, ...]) -> tuple[list[list[str]], list[str]]:
    """Images and XML of one DET split; returns each class's ``train_k.txt`` rows (``<id> 1|-1``)
    and the ``val.txt``-style rows (``<id> <index>``)."""
    data_dir = os.path.join(tmp, "Data", "DET", split)
    ann_dir = os.path.join(tmp, "Annotations", "DET", split)
    os.makedirs(data_dir)
    os.makedirs(ann_dir)
    membership: list[list[str]] = [[] for _ in wnids]
    listing = []
    for i in range(n + negatives):
        name = f"toy_{split}_{i:06d}"
        if i < n:
            img, objects = det_image(rng, len(wnids))
        else:  # a negative: background only, and, as in the real data, no XML
            w, h = int(rng.integers(112, 176)), int(rng.integers(88, 128))
            img, objects = background(rng, h, w), []
        cv2.imwrite(os.path.join(data_dir, name + ".JPEG"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if objects:
            with open(os.path.join(ann_dir, name + ".xml"), "w") as f:
                f.write(_xml(split, name, img.shape[1], img.shape[0], objects, wnids))
        present = {c for c, _ in objects}
        for k in range(len(wnids)):
            membership[k].append(f"{name} {1 if k in present else -1}")
        listing.append(f"{name} {i + 1}")
    return membership, listing


def make_toy_ilsvrc(root: str, n_train: int = 120, n_val: int = 60, n_negative: int = 20, num_classes: int = 10,
                    cls_per_class: int = 80, seed: int = 0) -> str:
    """Write the miniature at ``root`` (the folder holding Data/, Annotations/, ImageSets/) unless an
    identical one is there; return ``root``."""
    params = {"n_train": n_train, "n_val": n_val, "n_negative": n_negative, "num_classes": num_classes,
              "cls_per_class": cls_per_class, "seed": seed, "version": 4}
    marker = os.path.join(root, "toy_ilsvrc.json")
    if os.path.isfile(marker):
        if read_marker(marker) == params:
            return root
        raise FileExistsError(f"{root}: holds a different miniature ILSVRC ({marker}); delete it or choose another "
                              "root")
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"{root}: exists and is not a miniature ILSVRC; choose another root")
    tmp = f"{root}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    wnids = TOY_WNIDS[:num_classes]
    sets = os.path.join(tmp, "ImageSets", "DET")
    os.makedirs(sets)
    membership, _ = _write_split(tmp, "train", n_train, n_negative, rng, wnids)
    _, listing = _write_split(tmp, "val", n_val, 0, rng, wnids)
    with open(os.path.join(sets, "val.txt"), "w") as f:
        f.write("\n".join(listing) + "\n")
    # a blacklist in the devkit's format: (image index, wnid) pairs left out of scoring
    with open(os.path.join(tmp, "det_validation_blacklist.txt"), "w") as f:
        for i in range(0, n_val, 17):
            f.write(f"{i + 1} {wnids[i % num_classes]}\n")
    for k in range(num_classes):
        with open(os.path.join(sets, f"train_{k + 1}.txt"), "w") as f:
            f.write("\n".join(membership[k]) + "\n")
    with open(os.path.join(tmp, "map_det.txt"), "w") as f:
        for k in range(num_classes):
            f.write(f"{wnids[k]} {k + 1} {SHAPES[k]}\n")
    make_toy_imagenet(os.path.join(tmp, "Data", "CLS-LOC"), n_train=cls_per_class, n_val=max(10, cls_per_class // 4),
                      size=72, num_classes=num_classes, seed=seed)
    with open(os.path.join(tmp, "toy_ilsvrc.json"), "w") as f:
        json.dump(params, f)
    publish_dir(tmp, root, lambda: read_marker(marker) == params)
    return root
