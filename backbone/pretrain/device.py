"""Pretraining's ``data.decode: device``: the loader workers read each training image's bytes and
draw its augmentation; the batch is decoded and augmented where the model runs.

A worker runs the training transform (:func:`.data.train_transform`, the paper's random-resized
crop with a random interpolation, the mirror, the photometric distortion) from the sample's own
seed, as the cpu path does, but on a blank image of the file's size: albumentations draws the same
crop, interpolation, mirror and colour factors, and reports them (``save_applied_params``). They
travel with the bytes as an :class:`EncodedCrop`. :func:`decode_crops` then decodes the batch in
one call (:func:`core.decode.decode_batch`: nvJPEG on a GPU) and crops, resizes, mirrors,
distorts and normalises each image there, in ``torch``: OpenCV's interpolations by their
``torchvision`` namesakes (``INTER_AREA`` by antialiased bilinear), Howard's operations and
AlexNet's lighting as :mod:`.photometric` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import albumentations as A
import cv2
import numpy as np
import torch

from core.decode import color_jitter, decode_batch, read_encoded, shown_size

from .photometric import HOWARD_OPS

# what a plan may carry: the colour operations decode_crops knows how to apply
COLOUR_OPS = ("HowardColour", "PCALighting", "ColorJitter")


@dataclass
class EncodedCrop:
    """A training image as a loader worker leaves it: its bytes and the augmentation drawn for it."""

    path: str
    data: torch.Tensor  # [B] uint8, the file as stored
    exif: bool  # turn the decoded pixels as the file's EXIF orientation says (read_image does)
    box: tuple[int, int, int, int]  # the crop, x1 y1 x2 y2 in the turned image's pixels
    side: int  # the crop's output size, side x side
    interpolation: int  # OpenCV's flag, as drawn
    flip: bool
    colour: list[tuple[str, dict]] = field(default_factory=list)  # (op, drawn params), in order
    norm: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,) * 3, (1.0,) * 3)  # mean, std of 0..1 RGB

    def pin_memory(self) -> EncodedCrop:
        return replace(self, data=self.data.pin_memory())


def plan_crop(transform: A.Compose, path: str, seed: int, norm) -> EncodedCrop:
    """What ``transform`` (seeded with ``seed``) does to the image at ``path``, without decoding it.
    Raises BadImageError naming the file."""
    data, w, h, orientation = read_encoded(path)
    w, h = shown_size(w, h, orientation)
    transform.set_random_seed(seed)
    out = transform(image=np.zeros((h, w, 3), np.uint8))
    applied = out["applied_transforms"]
    unknown = [n for n, _ in applied if n not in ("RandomResizedCrop", "HorizontalFlip", "Normalize", *COLOUR_OPS)]
    if unknown or "RandomResizedCrop" not in dict(applied):
        raise ValueError(f"data.decode=device applies the training transform's random-resized crop, mirror and "
                         f"colour on the device, not {unknown or 'a transform without that crop'}: use data.decode=cpu")
    crop, side = dict(applied)["RandomResizedCrop"], out["image"].shape[0]
    return EncodedCrop(path, data, orientation != 1, tuple(int(v) for v in crop["crop_coords"]), side,
                       int(crop["interpolation"]), "HorizontalFlip" in dict(applied),
                       [(n, p) for n, p in applied if n in COLOUR_OPS], norm)


def decode_crops(items: list[EncodedCrop], device: torch.device) -> torch.Tensor:
    """``[B, 3, side, side]`` float on ``device``, normalised: the batch decoded and augmented there."""
    decoded = decode_batch([e.data for e in items], [e.exif for e in items], [e.path for e in items], device)
    out = torch.stack([crop_pixels(im, e) for im, e in zip(decoded, items)]).float().div_(255.0)
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in items[0].norm)
    return out.sub_(mean).div_(std)


_MODES = {cv2.INTER_LINEAR: ("BILINEAR", False), cv2.INTER_AREA: ("BILINEAR", True),
          cv2.INTER_NEAREST: ("NEAREST", False), cv2.INTER_CUBIC: ("BICUBIC", False)}


def crop_pixels(image: torch.Tensor, e: EncodedCrop) -> torch.Tensor:
    """uint8 ``[3, H, W]`` -> uint8 ``[3, side, side]``: cropped, resized, mirrored, distorted."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    x1, y1, x2, y2 = e.box
    mode, antialias = _MODES[e.interpolation]
    image = TF.resize(image[:, y1:y2, x1:x2], [e.side, e.side], interpolation=InterpolationMode[mode],
                      antialias=antialias)
    if e.flip:
        image = image.flip(-1)
    for name, p in e.colour:
        if name == "HowardColour":
            for op, f in zip(p["order"], p["factors"]):
                image = enhance(image, op, f)
        elif name == "PCALighting":
            offset = torch.as_tensor(p["offset"], dtype=torch.float32, device=image.device).view(3, 1, 1)
            image = (image.float() + offset).round_().clamp_(0, 255).to(torch.uint8)
        else:  # ColorJitter, in the order drawn
            image = color_jitter(image, (p["brightness"], p["contrast"], p["saturation"]), p["order"])
    return image


def enhance(image: torch.Tensor, op: str, factor: float) -> torch.Tensor:
    """:func:`.photometric.enhance` on a uint8 ``[3, H, W]`` tensor: PIL's blend with black, the
    mean grey level or the grey image, rounded and clipped."""
    if op not in HOWARD_OPS:
        raise ValueError(f"op must be one of {HOWARD_OPS}, got {op!r}")
    x = image.float()
    if op == "brightness":
        y = x * factor
    else:
        grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).round_()  # ITU-R 601 luma, as uint8
        if op == "contrast":
            y = x * factor + (1.0 - factor) * float(int(float(grey.mean()) + 0.5))
        else:
            y = x * factor + grey * (1.0 - factor)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def images_on(images: torch.Tensor | list[EncodedCrop], device: torch.device) -> torch.Tensor:
    """A batch's images on ``device`` as the network takes them: a tensor copied there, or the
    encoded crops of ``data.decode: device`` decoded and augmented there."""
    if isinstance(images, torch.Tensor):
        return images.to(device, non_blocking=True)
    return decode_crops(images, device)
