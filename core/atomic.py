"""Every output is written atomically: into a temporary file beside its path, fsync, then renamed
over it. A crash or an interrupt leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from .errors import UserError

# torch.save reports a failed write of its zip container as a RuntimeError ("unexpected pos ..."),
# not as the OSError underneath; with this little room left, that failure is taken as a full disk.
LOW_SPACE = 64 << 20


class OutputError(UserError):
    """An output that could not be written (a full disk); the old file, if any, is kept."""


def write_atomic(path: str, mode: str, write: Callable[[IO], object]) -> None:
    """``write(file)`` into a temporary file beside ``path`` (opened with ``mode``), then rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if disk_full(e, folder):
            free = shutil.disk_usage(folder).free
            raise OutputError(f"{path}: no space left on the device ({free >> 20} MiB free); the old file is kept: "
                              "free some space (old work_dirs, checkpoints) and run the command again") from None
        raise


def disk_full(error: BaseException, folder: str) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, RuntimeError) and shutil.disk_usage(folder).free < LOW_SPACE


def publish_dir(tmp: str, root: str, same: Callable[[], bool]) -> None:
    """Rename the finished folder ``tmp`` to ``root`` (an empty ``root`` is replaced). When another
    process published ``root`` first (ensemble members started together, each making the missing
    miniature) and ``same()`` says it holds what ``tmp`` does, ``tmp`` is dropped; a ``root`` that
    holds anything else is an error."""
    os.makedirs(os.path.dirname(os.path.abspath(root)), exist_ok=True)
    try:
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)
        os.replace(tmp, root)
    except OSError:
        if not same():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path`` (checkpoints, exports)."""
    import torch  # here, not above: scoring a results file (eval_map --detections) needs no torch

    write_atomic(path, "wb", lambda f: torch.save(obj, f))


def write_text_atomic(path: str, text: str) -> None:
    """``text`` to ``path`` (results files, split lists)."""
    write_atomic(path, "w", lambda f: f.write(text))


def write_json_atomic(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1))


def write_bytes_atomic(path: str, data: bytes) -> None:
    write_atomic(path, "wb", lambda f: f.write(data))


def write_png_atomic(path: str, image_bgr: np.ndarray) -> None:
    """An OpenCV (BGR) image as PNG."""
    import cv2

    ok, encoded = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {image_bgr.shape} image as PNG")
    write_bytes_atomic(path, encoded.tobytes())


def save_figure_atomic(figure, path: str, dpi: int = 100) -> None:
    """A matplotlib figure as PNG."""
    write_atomic(path, "wb", lambda f: figure.savefig(f, format="png", dpi=dpi))
