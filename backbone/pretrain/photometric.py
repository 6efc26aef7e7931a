"""The paper's photometric distortions (§6: "photometric distortions of Andrew Howard [8] were
useful to combat overfitting"), as albumentations transforms.

Howard, "Some improvements on deep convolutional neural network based image classification"
(arXiv 1312.5402), §2.1: contrast, brightness and colour are manipulated as PIL's
``ImageEnhance`` does, each by a factor drawn in 0.5..1.5, in a random order, then AlexNet's
lighting noise is added. PIL's operations blend the image with a degenerate one:

* brightness: with black (``x * f``);
* contrast: with the mean grey level of the image;
* colour: with the image's grey version (ITU-R 601 luma, PIL's ``convert("L")``).

AlexNet's lighting (Krizhevsky et al. 2012, §4.1): to every pixel add ``V (alpha * lambda)``,
``alpha ~ N(0, 0.1^2)`` per image, where ``lambda, V`` are the eigenvalues and eigenvectors
(columns) of the RGB covariance of ImageNet's training pixels (in 0..1; the values
fb.resnet.torch publishes). albumentations' ``FancyPCA`` computes the PCA of each image instead.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

# ImageNet RGB pixel covariance (pixels in 0..1): eigenvalues and eigenvectors as columns.
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float64)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], np.float64)
HOWARD_OPS = ("brightness", "contrast", "colour")


def enhance(img: np.ndarray, op: str, factor: float) -> np.ndarray:
    """One of PIL's ``ImageEnhance`` operations on an RGB uint8 image, rounded and clipped to
    uint8 as PIL's are (in OpenCV: about 8x faster than the same in NumPy floats)."""
    if img.dtype != np.uint8:
        raise TypeError(f"enhance takes a uint8 image, got {img.dtype}")
    if op == "brightness":  # blend with black
        return cv2.addWeighted(img, factor, img, 0.0, 0.0)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)  # ITU-R 601 luma, as PIL's convert("L")
    if op == "contrast":  # blend with the mean grey level (PIL rounds it to an integer)
        return cv2.addWeighted(img, factor, img, 0.0, (1.0 - factor) * float(int(grey.mean() + 0.5)))
    if op == "colour":  # blend with the grey image
        return cv2.addWeighted(img, factor, cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), 1.0 - factor, 0.0)
    raise ValueError(f"op must be one of {HOWARD_OPS}, got {op!r}")


class HowardColour(A.ImageOnlyTransform):
    """Brightness, contrast and colour, each by a factor uniform in ``factor_range``, in a random order."""

    def __init__(self, factor_range: tuple[float, float] = (0.5, 1.5), p: float = 1.0) -> None:
        super().__init__(p=p)
        lo, hi = factor_range
        if not 0 <= lo <= hi:
            raise ValueError(f"factor_range must be 0 <= low <= high, got {factor_range}")
        self.factor_range = (float(lo), float(hi))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        order = list(HOWARD_OPS)
        self.py_random.shuffle(order)
        return {"order": order, "factors": [self.py_random.uniform(*self.factor_range) for _ in order]}

    def apply(self, img: np.ndarray, order: list[str], factors: list[float], **params: Any) -> np.ndarray:
        out = img if img.dtype == np.uint8 else np.clip(np.rint(img), 0, 255).astype(np.uint8)
        for op, f in zip(order, factors):
            out = enhance(out, op, f)
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("factor_range",)


class PCALighting(A.ImageOnlyTransform):
    """AlexNet's lighting noise with ImageNet's eigenvectors, clipped to 0..255. A uint8 image stays
    uint8 (the offset rounded per pixel: albumentations normalises uint8 through a lookup table,
    9x faster than float32 at 224 px); a float image gets the exact offset."""

    def __init__(self, alpha_std: float = 0.1, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.alpha_std = float(alpha_std)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        alpha = self.random_generator.normal(0.0, self.alpha_std, size=3)
        return {"offset": lighting_offset(alpha)}

    def apply(self, img: np.ndarray, offset: np.ndarray, **params: Any) -> np.ndarray:
        if img.dtype == np.uint8:
            return cv2.add(img, (*offset.tolist(), 0.0))  # rounded, saturated
        return np.clip(img.astype(np.float32) + offset.astype(np.float32), 0.0, 255.0)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("alpha_std",)


def lighting_offset(alpha: np.ndarray) -> np.ndarray:
    """The RGB offset (0..255 units) AlexNet adds for coefficients ``alpha`` ``[3]``: ``V (alpha * lambda)``."""
    return 255.0 * IMAGENET_EIGVEC @ (np.asarray(alpha, np.float64) * IMAGENET_EIGVAL)  # [3]


def lighting_covariance(alpha_std: float = 0.1) -> np.ndarray:
    """The covariance ``[3, 3]`` (0..255 units) of :func:`lighting_offset` for ``alpha ~ N(0, alpha_std^2)``."""
    v = IMAGENET_EIGVEC * (255.0 * alpha_std * IMAGENET_EIGVAL)  # columns scaled
    return v @ v.T
