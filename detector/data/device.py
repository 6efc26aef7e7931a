"""``data.decode: device``: the loader workers read each image's bytes and draw its random choices;
the batch's pixels are decoded and augmented where the model runs.

A worker never decodes. It reads the file, checks its header against the annotation (PIL reads the
size and EXIF orientation without decoding), and runs :meth:`DetTransform.plan`, which draws from the
same per-sample seed as the OpenCV path and moves the boxes with the same albumentations code, so
the boxes are those of ``data.decode: cpu`` exactly. What it did to the pixels travels with the
bytes as an :class:`Encoded`.

:func:`decode_to` then makes the batch's pixels on the device: one batched decode
(:func:`core.decode.decode_batch`: nvJPEG on a GPU), and per image the resize (antialiased
bilinear, where OpenCV's path shrinks with ``INTER_AREA``), the mirror and the colour jitter
albumentations drew, with ``torchvision.transforms.v2.functional``. A decode that fails names the
file and stops the run: with ``data.decode: cpu`` a corrupt image body is skipped instead, since
the worker that finds it can leave it out of its batch (docs/gpu.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from core.decode import TRANSPOSED, color_jitter, decode_batch
from core.decode import read_encoded as read_stored
from core.errors import BadImageError

from .sample import ImageRecord


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


def size_mismatch(rec: ImageRecord, width: int, height: int) -> BadImageError:
    """The error for an image whose stored size (either way round) is not its annotation's."""
    return BadImageError(rec.path, f"image is {width}x{height}, its annotation ({rec.source}) says "
                                   f"{rec.width}x{rec.height}")


def read_encoded(rec: ImageRecord) -> tuple[torch.Tensor, bool]:
    """``(bytes [B] uint8, exif)`` of ``rec``'s image: ``exif`` when its annotated size is the
    EXIF-rotated view of the stored pixels (as ``dataset.load_sample`` decides). Raises
    BadImageError naming the file."""
    data, w, h, orientation = read_stored(rec.path)
    exif = (h, w) != (rec.height, rec.width)
    if exif and not (orientation in TRANSPOSED and (w, h) == (rec.height, rec.width)):
        raise size_mismatch(rec, w, h)
    return data, exif


def decode_to(items: list[Encoded], device: torch.device) -> list[torch.Tensor]:
    """The batch's images on ``device`` as the detector takes them (float ``[3, H, W]`` in 0..1),
    decoded, resized, mirrored and jittered there as each ``Encoded`` says."""
    decoded = decode_batch([e.data for e in items], [e.exif for e in items], [e.path for e in items], device)
    return [pixels(im, e).float().div_(255.0) for im, e in zip(decoded, items)]


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
        image = color_jitter(image, *e.jitter)
    return image
