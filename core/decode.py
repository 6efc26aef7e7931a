"""Decoding where the model runs (``data.decode: device``, detection and pretraining alike): a
loader worker reads a file's bytes and its header (:func:`read_encoded`: size and EXIF orientation,
through PIL, nothing decoded); the training process decodes a batch of them in one call
(:func:`decode_batch`: ``torchvision.io.decode_jpeg`` with a list, which is nvJPEG's batched decoder
on a GPU and libjpeg-turbo on the CPU; other formats are decoded on the CPU and copied); and
the colour jitter both device paths apply (:func:`color_jitter`).

``torchvision.io``'s decoders are deprecated since torchvision 0.29 in favour of ``torchcodec``;
they are the ones in this project's pinned torchvision and need no other package."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from .errors import BadImageError

UNREADABLE = "not a decodable image (corrupt, truncated or empty)"
# EXIF orientations that swap width and height (rotations by 90 and 270 degrees, mirrored or not)
TRANSPOSED = (5, 6, 7, 8)


def read_encoded(path: str) -> tuple[torch.Tensor, int, int, int]:
    """``(bytes [B] uint8, width, height, EXIF orientation)`` of the stored image at ``path``,
    from its header only. Raises BadImageError naming the file."""
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
        raise BadImageError(path, UNREADABLE) from None
    return torch.from_numpy(data), w, h, orientation


def shown_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(width, height)`` of the image as its EXIF orientation shows it."""
    return (height, width) if orientation in TRANSPOSED else (width, height)


def is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 3 and bool((data[:3] == torch.tensor([0xFF, 0xD8, 0xFF], dtype=torch.uint8)).all())


def decode_batch(datas: list[torch.Tensor], exifs: list[bool], paths: list[str],
                 device: torch.device) -> list[torch.Tensor]:
    """uint8 RGB ``[3, H, W]`` on ``device`` for each file's bytes (``exifs``: turn it as its EXIF
    orientation says). A file that does not decode raises BadImageError naming it."""
    out: list[torch.Tensor | None] = [None] * len(datas)
    for exif in (False, True):  # decode_jpeg takes one EXIF setting per call
        group = [i for i in range(len(datas)) if exifs[i] == exif and is_jpeg(datas[i])]
        if group:
            decoded = _jpegs([datas[i] for i in group], [paths[i] for i in group], device, exif)
            for i, im in zip(group, decoded):
                out[i] = im
    for i in range(len(datas)):
        if out[i] is None:
            out[i] = _other(datas[i], paths[i], exifs[i]).to(device)
    return out


def _jpegs(datas: list[torch.Tensor], paths: list[str], device: torch.device, exif: bool) -> list[torch.Tensor]:
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_jpeg(datas, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=exif)
        except RuntimeError:  # a batch decode fails whole: find the file, one at a time
            for data, path in zip(datas, paths):
                try:
                    decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=exif)
                except RuntimeError:
                    raise BadImageError(path, f"{UNREADABLE}; data.decode=cpu skips such images") from None
            raise


def _other(data: torch.Tensor, path: str, exif: bool) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=exif)
        except RuntimeError:
            raise BadImageError(path, f"{UNREADABLE}; data.decode=cpu skips such images") from None


def color_jitter(image: torch.Tensor, factors: tuple[float, float, float], order: list[int] | tuple[int, ...]
                 ) -> torch.Tensor:
    """albumentations' ``ColorJitter`` as it drew its parameters (brightness, contrast, saturation
    ``factors``; ``order`` indexes them, 3 being hue, which the configs keep off) on a uint8
    ``[3, H, W]`` tensor, with ``torchvision.transforms.v2.functional``: the device paths' twin of
    the loader workers' jitter."""
    from torchvision.transforms.v2 import functional as TF

    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for k in order:
        if k < len(ops):
            image = ops[k](image, factors[k])
    return image
