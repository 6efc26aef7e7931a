"""Videos and cameras for inference (OpenCV): frames in, drawn frames out, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import cv2
import numpy as np

from core.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTENSIONS)


def open_capture(source: str | int) -> tuple[cv2.VideoCapture, float]:
    """``(capture, frames per second)`` of a video file or a camera index; a source that cannot be
    opened is a :class:`DataError` naming it."""
    if isinstance(source, int):  # OpenCV warns once per backend it tries; the error below says it all
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        if isinstance(source, int):
            raise DataError(f"camera {source} could not be opened: is one connected, and can this OpenCV build "
                            "reach cameras? (the headless wheels read V4L2 devices only)")
        raise DataError(f"{source}: not a video OpenCV can read")
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, fps if fps and fps > 0 else 25.0


def frames(cap: cv2.VideoCapture, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames until the source ends (or ``max_frames``)."""
    n = 0
    try:
        while max_frames is None or n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                return
            n += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoOutput:
    """An MP4 written to a temporary file beside ``path`` and renamed over it on :meth:`close`, so
    an interrupted run leaves no half video under the final name (use as a context manager)."""

    def __init__(self, path: str, fps: float) -> None:
        self.path, self.fps = path, fps
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp.mp4", dir=folder)
        os.close(fd)
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:  # the size is the first frame's
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(self.tmp, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise DataError(f"{self.path}: OpenCV cannot write MP4 (mp4v) here")
        self.writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        self.frames += 1

    def __enter__(self) -> VideoOutput:
        return self

    def __exit__(self, kind, *_) -> None:
        if self.writer is not None:
            self.writer.release()
        if kind is None and self.frames:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)
