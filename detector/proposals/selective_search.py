"""Selective Search (Uijlings et al., IJCV 2013) through OpenCV contrib's ``ximgproc``, set up as
the authors' own code runs it, with the 2014 entry's change (spec §3: "the superpixel size was
increased by 2x").

The authors' modes (their ``demo.m`` / R-CNN's ``selective_search_boxes.m``):

* ``fast`` (R-CNN's): colour spaces HSV and Lab; Felzenszwalb-Huttenlocher segmentations with
  k = 50, 100 (and min_size = k); strategies colour+texture+size+fill and texture+size+fill.
* ``quality``: colour spaces HSV, Lab, rgI, H and I; k = 50, 100, 150, 300; those two strategies
  plus fill alone and size alone.

The entry's 2x superpixels are ``k_scale=2``: the graph segmentation merges two components while
their difference is below k/|C|, so k sets the typical segment size. Measured here on 10 tiny-COCO
photos (HSV, sigma 0.8, min_size = k): mean segment area 436 px at k=50, 1,053 at 100, 2,357 at
200, so doubling k gives segments about 2.2-2.4x the area. (OpenCV's own ``switchToSelectiveSearch*``
use k = 150, 300, 450 and min_size 100: neither the authors' nor the entry's setting.)

OpenCV ranks the boxes by a random factor from the C library's ``rand()`` (its "rank = level x
random"), whose state carries over from one image to the next: the same image's boxes come in
another order after other images. Each call reseeds it (``srand(1)``), so an image's boxes and their
order depend on the image alone, whichever process or position it is in.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

from core.errors import UserError

from ..data.transforms import resize_scale

# the wheel that provides cv2.ximgproc at today's OpenCV version (the Makefile installs it over the
# plain wheel that albumentations requires by name; README, "Dependencies")
OPENCV_CONTRIB = "opencv-contrib-python-headless==4.14.0.94"
UIJLINGS_K = {"fast": (50, 100), "quality": (50, 100, 150, 300)}


class MissingContribError(UserError):
    """``cv2`` without ``ximgproc``: the plain OpenCV wheel instead of the contrib one."""


def require_ximgproc() -> None:
    if not hasattr(cv2, "ximgproc"):
        raise MissingContribError(
            f"cv2 {cv2.__version__} has no ximgproc (Selective Search is in OpenCV contrib): install it with "
            f"{sys.executable} -m pip install --no-deps --force-reinstall {OPENCV_CONTRIB}")


@functools.cache
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") if sys.platform == "win32" else None)


@dataclass(frozen=True)
class SelectiveSearch:
    """Selective Search settings; call it on an RGB image for its boxes (``[P, 4]`` float32 xyxy
    in that image's pixels, OpenCV's ranking order)."""

    mode: Literal["fast", "quality"] = "fast"
    k_scale: float = 2.0  # the entry's superpixels, 2x larger; 1: R-CNN's
    sigma: float = 0.8  # Gaussian smoothing before segmenting, the authors' value
    max_side: int = 0  # >0: segment a copy whose longer side is at most this (boxes scaled back)

    def __post_init__(self) -> None:
        if self.mode not in UIJLINGS_K:
            raise ValueError(f"mode must be 'fast' or 'quality', got {self.mode!r}")
        if self.k_scale <= 0 or self.sigma < 0 or self.max_side < 0:
            raise ValueError(f"need k_scale > 0, sigma >= 0, max_side >= 0; got {self}")

    @property
    def ks(self) -> list[int]:
        return [max(1, round(k * self.k_scale)) for k in UIJLINGS_K[self.mode]]

    def settings(self) -> dict:
        return {**asdict(self), "k": self.ks, "opencv": cv2.__version__}

    def _segmenter(self, bgr: np.ndarray):
        seg = cv2.ximgproc.segmentation
        ss = seg.createSelectiveSearchSegmentation()
        ss.setBaseImage(bgr)
        ss.clearImages()
        ss.clearGraphSegmentations()
        ss.clearStrategies()
        for image in _colour_spaces(bgr, self.mode):
            ss.addImage(image)
        for k in self.ks:
            ss.addGraphSegmentation(seg.createGraphSegmentation(sigma=self.sigma, k=float(k), min_size=k))
        colour = seg.createSelectiveSearchSegmentationStrategyColor
        texture = seg.createSelectiveSearchSegmentationStrategyTexture
        size = seg.createSelectiveSearchSegmentationStrategySize
        fill = seg.createSelectiveSearchSegmentationStrategyFill
        multiple = seg.createSelectiveSearchSegmentationStrategyMultiple
        ss.addStrategy(multiple(colour(), texture(), size(), fill()))
        ss.addStrategy(multiple(texture(), size(), fill()))
        if self.mode == "quality":
            ss.addStrategy(fill())
            ss.addStrategy(size())
        return ss

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        require_ximgproc()
        h, w = image_rgb.shape[:2]
        f = 1.0 if not self.max_side or max(h, w) <= self.max_side else resize_scale(h, w, self.max_side,
                                                                                     self.max_side)
        small = image_rgb if f == 1.0 else cv2.resize(image_rgb, (max(1, round(w * f)), max(1, round(h * f))),
                                                       interpolation=cv2.INTER_AREA)
        ss = self._segmenter(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        _libc().srand(1)  # OpenCV's ranking draws from rand(): the same order for the same image
        rects = np.asarray(ss.process(), np.float32).reshape(-1, 4)  # [P, 4] x, y, w, h
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        if f != 1.0:
            sh, sw = small.shape[:2]
            boxes *= np.array([w / sw, h / sh, w / sw, h / sh], np.float32)
        return boxes


def _colour_spaces(bgr: np.ndarray, mode: str) -> list[np.ndarray]:
    hsv, lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV), cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)
    if mode == "fast":
        return [hsv, lab]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgi = cv2.merge([bgr[:, :, 2], bgr[:, :, 1], gray])  # normalised r, g and intensity, as OpenCV's quality mode
    return [hsv, lab, rgi, np.ascontiguousarray(hsv[:, :, 0]), gray]
