"""``data.decode: device``: the loader workers read each image's bytes and draw its random choices;
the batch's pixels are decoded and augmented where the model runs.

A worker never decodes. It reads the file, checks its header against the annotation (PIL reads the
size and EXIF orientation without decoding), and runs :meth:`DetTransform.plan`, which draws from the
same per-sample seed as the OpenCV path and moves the boxes with the same albumentations code, so
the boxes are those of ``data.decode: cpu`` exactly. What it did to the pixels travels with the
bytes as an :class:`Encoded`.

:func:`decode_to` then makes the batch's pixels on the device: one batched JPEG decode (nvJPEG
through ``torchvision.io.decode_jpeg`` on a GPU, libjpeg-turbo on the CPU), and per image the
resize (antialiased bilinear, where OpenCV's path shrinks with ``INTER_AREA``), the mirror and
the colour jitter albumentations drew, with ``torchvision.transforms.v2.functional``. Other formats
(PNG, ...) are decoded on the CPU and then copied. A decode that fails names the file and stops
the run: with ``data.decode: cpu`` a corrupt image body is skipped instead, since the worker that
finds it can leave it out of its batch (docs/gpu.md).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
import torch

from core.errors import BadImageError

# EXIF orientations that swap width and height (rotations by 90 and 270 degrees, mirrored or not)
_TRANSPOSED = (5, 6, 7, 8)
_UNREADABLE = "not a decodable image (corrupt, truncated or empty)"


@dataclass
class Encoded:
    """An image as a loader worker leaves it: its file's bytes and what to do to its pixels."""

    path: str
    data: torch.Tensor  # [B] uint8, the file as stored
    size: tuple[int, int]  # (height, width) after resizing
    exif: bool  # the annotation's size is the EXIF-rotated view: rotate as decoded
    flip: bool = False
    # albumentations' ColorJitter as drawn: (brightness, contrast, saturation) factors and the
    # order it applies them in (0 brightness, 1 contrast, 2 saturation, 3 hue, which is off)
    jitter: tuple[tuple[float, float, float], tuple[int, ...]] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``[H, W, 3]`` of the pixels to come, as a decoded sample's image has it."""
        return (*self.size, 3)

    def pin_memory(self) -> Encoded:
        return replace(self, data=self.data.pin_memory())


def read_encoded(path: str, height: int, width: int, source: str = "") -> tuple[torch.Tensor, bool]:
    """``(bytes [B] uint8, exif)`` of the image at ``path`` that its annotation says is
    ``width x height``: ``exif`` when that is the EXIF-rotated view of the stored pixels (as
    ``dataset.load_sample`` decides). Raises BadImageError naming the file."""
    from PIL import Image

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise BadImageError(path, f"cannot read ({e.strerror or e})") from None
    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # PIL raises a dozen kinds on a bad header: every one means the same here
        raise BadImageError(path, _UNREADABLE) from None
    exif = (h, w) != (height, width)
    if exif and not (orientation in _TRANSPOSED and (w, h) == (height, width)):
        raise BadImageError(path, f"image is {w}x{h}, its annotation ({source}) says {width}x{height}")
    return torch.from_numpy(data), exif


def is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 3 and bool((data[:3] == torch.tensor([0xFF, 0xD8, 0xFF], dtype=torch.uint8)).all())


def decode_to(items: list[Encoded], device: torch.device) -> list[torch.Tensor]:
    """The batch's images on ``device`` as the detector takes them (float ``[3, H, W]`` in 0..1),
    decoded, resized, mirrored and jittered there as each ``Encoded`` says."""
    decoded: list[torch.Tensor | None] = [None] * len(items)
    for exif in (False, True):  # decode_jpeg takes one EXIF setting per call
        group = [i for i, e in enumerate(items) if e.exif == exif and is_jpeg(e.data)]
        if group:
            for i, im in zip(group, _decode_jpegs([items[i] for i in group], device, exif)):
                decoded[i] = im
    for i, e in enumerate(items):
        if decoded[i] is None:
            decoded[i] = _decode_other(e).to(device)
    return [pixels(im, e).float().div_(255.0) for im, e in zip(decoded, items)]


def _decode_jpegs(items: list[Encoded], device: torch.device, exif: bool) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg([e.data for e in items], mode=ImageReadMode.RGB, device=device,
                           apply_exif_orientation=exif)
    except RuntimeError:  # a batch decode fails whole: find the file, one at a time
        for e in items:
            try:
                decode_jpeg(e.data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=exif)
            except RuntimeError:
                raise BadImageError(e.path, f"{_UNREADABLE}; data.decode=cpu skips such images") from None
        raise


def _decode_other(e: Encoded) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(e.data, mode=ImageReadMode.RGB, apply_exif_orientation=e.exif)
    except RuntimeError:
        raise BadImageError(e.path, f"{_UNREADABLE}; data.decode=cpu skips such images") from None


def pixels(image: torch.Tensor, e: Encoded) -> torch.Tensor:
    """uint8 ``[3, h, w]`` -> uint8 ``[3, H, W]``: resized to ``e.size``, then mirrored and
    colour-jittered as albumentations drew it for the OpenCV path."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    if tuple(image.shape[-2:]) != e.size:
        image = TF.resize(image, list(e.size), interpolation=InterpolationMode.BILINEAR, antialias=True)
    if e.flip:
        image = image.flip(-1)
    if e.jitter is not None:
        factors, order = e.jitter
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
        for k in order:
            if k < len(ops):  # 3, hue, is drawn at 0 (DetTransform)
                image = ops[k](image, factors[k])
    return image
