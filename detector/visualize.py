"""Boxes and class names drawn on images (OpenCV), for browsing data and showing detections."""

from __future__ import annotations

import cv2
import numpy as np

DRAW_SIZE = 400  # px: the shorter side that drawn images are enlarged towards


def enlarged(image: np.ndarray, short: int = DRAW_SIZE) -> tuple[np.ndarray, int]:
    """``(image, f)``: small images (the miniature's are about 150 px) enlarged by a whole factor
    ``f`` to about ``short`` px, so that the class names drawn on them can be read; boxes scale by ``f``."""
    f = max(1, round(short / min(image.shape[:2])))
    if f > 1:
        image = cv2.resize(image, (image.shape[1] * f, image.shape[0] * f), interpolation=cv2.INTER_NEAREST)
    return image, f


def draw_boxes(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, names: list[str],
               scores: np.ndarray | None = None, ignore: np.ndarray | None = None) -> np.ndarray:
    """RGB ``image`` -> BGR copy with each xyxy box and its class (and score) drawn."""
    out = np.ascontiguousarray(image[:, :, ::-1])
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(np.asarray(boxes).tolist(), np.asarray(labels).tolist())):
        ign = ignore is not None and bool(ignore[k])
        colour = (128, 128, 128) if ign else (0, 255, 0)
        cv2.rectangle(out, (round(x1), round(y1)), (round(x2) - 1, round(y2) - 1), colour, 1)
        text = names[label - 1] if 0 < label <= len(names) else str(label)
        if scores is not None:
            text += f" {float(scores[k]):.2f}"
        if ign:
            text += " (ignored)"
        cv2.putText(out, text, (round(x1), max(8, round(y1) - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                    cv2.LINE_AA)
    return out
