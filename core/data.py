"""Reading what data sets are made of: images (decoded with OpenCV), folders of images, and synset
lists (``wnid id name`` lines: the devkits' ``map_clsloc.txt`` and ``map_det.txt``)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import BadImageError, DataError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str, exif_orientation: bool = True) -> np.ndarray:
    """Decode ``path`` to RGB uint8 ``[H, W, 3]``. Grayscale, 16-bit, RGBA and CMYK are converted
    (OpenCV's IMREAD_COLOR); EXIF orientation is applied unless ``exif_orientation=False`` (the
    stored pixel array, which is what box annotations usually refer to)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise BadImageError(path, f"cannot read ({e.strerror or e})") from None
    flags = cv2.IMREAD_COLOR if exif_orientation else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(data, flags) if data.size else None
    if img is None:
        raise BadImageError(path, "not a decodable image (corrupt, truncated or empty)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_paths(inputs: list[str]) -> list[str]:
    """Image files among ``inputs`` (files as given; folders searched recursively, sorted)."""
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += sorted(os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs
                          if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise DataError(f"{p}: no such image or folder")
    return out


def read_synsets(path: str) -> list[tuple[str, int, str]]:
    """``wnid id name`` lines -> [(wnid, id, name)]."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such synset list (wnid id name lines, the devkit's map_det.txt / "
                        "map_clsloc.txt): fix data.synsets=..., or leave it unset")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise DataError(f"{path}:{n}: expected 'wnid id name', got {line.strip()!r}")
            out.append((parts[0], int(parts[1]), parts[2].strip() if len(parts) > 2 else parts[0]))
    return out


def configured_path(path: str, root: str, key: str, folder: bool = False) -> str:
    """A file (or ``folder``) the config names as ``data.<key>``: under ``root``, else as given;
    one line naming the key when neither exists."""
    exists = os.path.isdir if folder else os.path.isfile
    for candidate in (os.path.join(root, path), path):
        if exists(candidate):
            return candidate
    raise DataError(f"{path}: no such {'folder' if folder else 'file'} (data.{key}; looked under {root} and as "
                    f"given): fix data.{key}=..., or leave it unset to have it found")


def first_file(folders: list[str], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` found in ``folders``, folder by folder (a search order)."""
    return next((os.path.join(f, n) for f in folders for n in names if os.path.isfile(os.path.join(f, n))), None)
