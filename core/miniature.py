"""The built-in miniature data: classes of drawn shapes on varied, muted backgrounds; the shape
names the class, the colour only narrows it down (docs/miniature.md). The drawing is shared by the
miniature ImageNet made here (pretraining) and the miniature ILSVRC DET (``detector.data.toy``),
so a backbone pretrained on one transfers to the other.

The miniature ImageNet has the real class-folder layout (``train/<wnid>/<wnid>_<i>.JPEG``,
``val/<wnid>/...``) and a synset list in ``map_clsloc.txt`` format (``wnid id name``); it is
deterministic from a seed, made in a temporary folder and renamed into place, so an interrupted
generation never leaves a half data set behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import cv2
import numpy as np

from .atomic import publish_dir

# name -> how it is drawn; wnid-like ids in a range no real synset uses
SHAPES = ("circle", "arrow", "triangle", "cross", "ring", "star", "diamond", "bar", "bowtie", "crescent")
TOY_WNIDS = tuple(f"n9{i:07d}" for i in range(1, len(SHAPES) + 1))


def _polygon(cx: float, cy: float, r: float, n: int, angle: float, inner: float | None = None) -> np.ndarray:
    pts = []
    steps = n * 2 if inner is not None else n
    for k in range(steps):
        rad = r if inner is None or k % 2 == 0 else r * inner
        a = angle + 2 * math.pi * k / steps
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return np.round(np.array(pts)).astype(np.int32)


def _placed(points: list[tuple[float, float]], cx: float, cy: float, angle: float) -> np.ndarray:
    """A polygon given around the origin, rotated by ``angle`` and moved to (cx, cy), in pixels."""
    c, s = math.cos(angle), math.sin(angle)
    return np.round([(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]).astype(np.int32)


def shape_mask(h: int, w: int, shape: str, cx: float, cy: float, size: float, angle: float = 0.0) -> np.ndarray:
    """The (H, W) uint8 mask (255 inside) of ``shape`` centred at (cx, cy), about ``size`` pixels
    across, in an H x W image."""
    mask = np.zeros((h, w), np.uint8)
    r = size / 2
    if shape == "circle":
        cv2.circle(mask, (round(cx), round(cy)), max(1, round(r)), 255, -1)
    elif shape == "ring":
        cv2.circle(mask, (round(cx), round(cy)), max(1, round(r)), 255, max(1, round(r / 3)))
    elif shape == "arrow":  # pointing up: a head over a shaft
        outline = [(0, -r), (0.8 * r, 0), (0.3 * r, 0), (0.3 * r, r), (-0.3 * r, r), (-0.3 * r, 0), (-0.8 * r, 0)]
        cv2.fillPoly(mask, [_placed(outline, cx, cy, angle)], 255)
    elif shape == "diamond":  # a rhombus twice as tall as wide: neither a square nor the wide bar
        cv2.fillPoly(mask, [_polygon(cx, cy, r, 2, angle + math.pi / 2, inner=0.5)], 255)
    elif shape == "triangle":
        cv2.fillPoly(mask, [_polygon(cx, cy, r, 3, angle - math.pi / 2)], 255)
    elif shape == "bowtie":  # two triangles meeting at their tips
        cv2.fillPoly(mask, [_placed([(-r, -0.8 * r), (r, 0.8 * r), (r, -0.8 * r), (-r, 0.8 * r)], cx, cy, angle)], 255)
    elif shape == "star":
        cv2.fillPoly(mask, [_polygon(cx, cy, r, 5, angle - math.pi / 2, inner=0.45)], 255)
    elif shape == "cross":
        t = max(1, round(r / 2.5))
        cv2.line(mask, (round(cx - r), round(cy)), (round(cx + r), round(cy)), 255, t)
        cv2.line(mask, (round(cx), round(cy - r)), (round(cx), round(cy + r)), 255, t)
    elif shape == "bar":
        # a third as wide as long: a thinner bar is 2 px wide at the smallest sizes, too little
        # for a stride-8 feature map to see
        dx, dy = r * math.cos(angle), r * math.sin(angle)
        cv2.line(mask, (round(cx - dx), round(cy - dy)), (round(cx + dx), round(cy + dy)), 255, max(2, round(r / 1.5)))
    elif shape == "crescent":
        # the bite takes under half the disc, so the horns stay as wide as a bar
        cv2.circle(mask, (round(cx), round(cy)), max(1, round(r)), 255, -1)
        off = r * 0.65
        cv2.circle(mask, (round(cx + off * math.cos(angle)), round(cy + off * math.sin(angle))),
                   max(1, round(r * 0.7)), 0, -1)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return mask


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight inclusive box ``(xmin, ymin, xmax, ymax)`` of a mask's set pixels, None if none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def draw_shape(image: np.ndarray, shape: str, cx: float, cy: float, size: float, color: tuple[int, int, int],
               angle: float = 0.0) -> tuple[int, int, int, int] | None:
    """Draw ``shape`` centred at (cx, cy), about ``size`` pixels across, onto ``image`` (H, W, 3 uint8,
    in place). Returns the tight inclusive box of the drawn pixels, or None if nothing landed inside
    the image."""
    mask = shape_mask(image.shape[0], image.shape[1], shape, cx, cy, size, angle)
    image[mask > 0] = color
    return mask_box(mask)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A varied, muted background: a random two-colour gradient pulled towards grey, noise, and a
    few clutter lines, so that the saturated objects stand out from it."""
    grey = rng.integers(60, 200)
    c0, c1 = (0.35 * rng.integers(0, 256, 3) + 0.65 * grey), (0.35 * rng.integers(0, 256, 3) + 0.65 * grey)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    ramp = (c0[None] * (1 - t[:, None]) + c1[None] * t[:, None])  # [L, 3]
    img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).astype(np.float32)
    img = img + rng.normal(0, rng.uniform(3, 12), (h, w, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        shade = int(rng.integers(0, 256))
        cv2.line(img, p0, p1, (shade, shade, shade), int(rng.integers(1, 3)))
    return img


# OpenCV hue 0..179: class c is centred at 18 c and drawn anywhere within +-HUE_SPREAD of it, so a
# hue is shared by about four classes and colour only narrows a class down: the shape decides
# (docs/miniature.md; tests/test_det_data.py holds a hue-only classifier to <= 40%).
HUE_SPREAD = 36


def class_color(rng: np.random.Generator, c: int) -> tuple[int, int, int]:
    """A saturated colour, at a random brightness, of a hue from class ``c``'s range (which
    overlaps its neighbours' ranges): colour is a weak cue, as in many real classes."""
    hue = (c * 180 // len(SHAPES) + int(rng.integers(-HUE_SPREAD, HUE_SPREAD + 1))) % 180
    hsv = np.array([[[hue, rng.integers(170, 256), rng.integers(150, 256)]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


# Shapes stand roughly upright, as most real objects do: within +-MAX_TILT radians of their drawn pose
MAX_TILT = math.pi / 12


def shape_angle(rng: np.random.Generator) -> float:
    """A shape's rotation: a small tilt from upright."""
    return float(rng.uniform(-MAX_TILT, MAX_TILT))


def _classification_image(rng: np.random.Generator, c: int, size: int) -> np.ndarray:
    img = background(rng, size, size)
    s = rng.uniform(0.45, 0.85) * size
    cx, cy = rng.uniform(s / 2, size - s / 2, 2)
    draw_shape(img, SHAPES[c], cx, cy, s, class_color(rng, c), angle=shape_angle(rng))
    return img


def read_marker(path: str) -> dict | None:
    """The parameters a generated miniature records (its ``toy_*.json``); None if unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def make_toy_imagenet(root: str | os.PathLike, n_train: int = 80, n_val: int = 20, size: int = 72,
                      num_classes: int = len(SHAPES), seed: int = 0) -> str:
    """Write the miniature at ``root`` unless an identical one is there; return ``root``."""
    root = os.fspath(root)
    params = {"n_train": n_train, "n_val": n_val, "size": size, "num_classes": num_classes, "seed": seed,
              "version": 6}
    marker = os.path.join(root, "toy_imagenet.json")
    if os.path.isfile(marker):
        if read_marker(marker) == params:
            return root
        raise FileExistsError(f"{root}: holds a different miniature ImageNet ({marker}); delete the folder or "
                              "point data.root elsewhere")
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"{root}: exists and is not a miniature ImageNet; point data.root elsewhere")
    if not 1 <= num_classes <= len(SHAPES):
        raise ValueError(f"num_classes must be 1..{len(SHAPES)}")
    tmp = f"{root}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in range(num_classes):
            folder = os.path.join(tmp, split, TOY_WNIDS[c])
            os.makedirs(folder)
            for i in range(n):
                img = _classification_image(rng, c, size)
                cv2.imwrite(os.path.join(folder, f"{TOY_WNIDS[c]}_{i}.JPEG"), img[:, :, ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
    with open(os.path.join(tmp, "map_clsloc.txt"), "w") as f:
        for c in range(num_classes):
            f.write(f"{TOY_WNIDS[c]} {c + 1} {SHAPES[c]}\n")
    with open(os.path.join(tmp, "toy_imagenet.json"), "w") as f:
        json.dump(params, f)
    publish_dir(tmp, root, lambda: read_marker(marker) == params)
    return root
