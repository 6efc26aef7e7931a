"""A trained detector for deployment: TorchScript or ONNX, checked against the eager model.

The exported graph takes one RGB image as a float tensor ``[3, H, W]`` in 0..1, already resized as
in training (shorter side to ``data.test_scale``, longer side at most ``data.max_size``; the
sidecar JSON says both) and returns ``(boxes [K, 4] xyxy in that image's pixels, scores [K],
labels [K] in 1..C)``; normalisation is inside. Both formats come from tracing: torchvision's
R-CNN code is written to trace with the image size left dynamic (the check below runs on images
of other sizes than the one traced).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from core.atomic import write_bytes_atomic, write_json_atomic

FORMATS = ("torchscript", "onnx")


class Deployable(nn.Module):
    """One image in, three tensors out (no lists or dicts: what TorchScript and ONNX callers want)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.model([image])[0]
        return out["boxes"], out["scores"], out["labels"]


def export(model: nn.Module, fmt: str, path: str, example: Tensor, meta: dict) -> str:
    """Write ``path`` (atomically) and ``path + '.json'`` (class names, input size rules)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    net = Deployable(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # tracing warns about every Python-level shape computation
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(net, (example,), check_trace=False), buffer)
        else:
            torch.onnx.export(net, (example,), buffer, opset_version=17, dynamo=False, input_names=["image"],
                              output_names=["boxes", "scores", "labels"],
                              dynamic_axes={"image": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                                            "scores": {0: "detections"}, "labels": {0: "detections"}})
    write_bytes_atomic(path, buffer.getvalue())
    write_json_atomic(path + ".json", {"format": fmt, "input": "RGB float [3, H, W] in 0..1, resized: shorter side "
                                       "test_scale, longer at most max_size", **meta})
    return path


def load_runner(fmt: str, path: str, device: torch.device | str = "cpu"):
    """A callable ``image [3, H, W] -> (boxes, scores, labels)`` as numpy, for the exported file;
    a TorchScript file runs on ``device`` (where it was traced), an ONNX file on onnxruntime's CPU."""
    if fmt == "torchscript":
        module = torch.jit.load(path, map_location=device).eval()

        def run(image: Tensor):
            with torch.inference_mode():
                return tuple(t.cpu().numpy() for t in module(image.to(device)))
        return run
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError("checking the ONNX file needs onnxruntime: pip install onnxruntime") from None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda image: tuple(session.run(None, {"image": image.cpu().numpy()}))


def _match(ref: list[np.ndarray], got: list[np.ndarray], score_tol: float) -> tuple[float, float] | None:
    """Pair each eager detection with an exported one of the same label and a score within
    ``score_tol`` (the closest box among them): ``(worst box diff, worst score diff)``, or None when
    one is left unpaired. Not position by position: detections with equal scores come out of the
    GPU's sort in either order."""
    free = np.ones(len(got[1]), bool)
    worst_box = worst_score = 0.0
    for box, score, label in zip(*ref):
        cands = np.flatnonzero(free & (np.asarray(got[2]) == label) & (np.abs(got[1] - score) <= score_tol))
        if not len(cands):
            return None
        diffs = np.abs(got[0][cands] - box).max(1)
        j = cands[int(diffs.argmin())]
        free[j] = False
        worst_box, worst_score = max(worst_box, float(diffs.min())), max(worst_score, float(abs(got[1][j] - score)))
    return worst_box, worst_score


def parity(model: nn.Module, runner, images: list[Tensor], box_tol: float = 1e-2, score_tol: float = 1e-4) -> dict:
    """Eager against exported on each image: the same detections (count, labels), boxes within
    ``box_tol`` pixels and scores within ``score_tol``. Returns the worst differences and ``ok``."""
    net = Deployable(model)
    device = next(model.parameters()).device
    worst = {"images": len(images), "detections": 0, "max_box_diff": 0.0, "max_score_diff": 0.0, "ok": True,
             "problem": None}
    for i, image in enumerate(images):
        with torch.inference_mode():
            ref = [t.cpu().numpy() for t in net(image.to(device))]
        got = [np.asarray(t) for t in runner(image)]
        paired = _match(ref, got, score_tol) if len(got[1]) == len(ref[1]) else None
        if paired is None:
            worst.update(ok=False, problem=f"image {i}: {len(got[1])} detections (labels {list(got[2])[:5]}...) "
                                           f"against eager {len(ref[1])} ({list(ref[2])[:5]}...), or labels and "
                                           f"scores that do not pair up")
            return worst
        worst["detections"] += len(ref[1])
        worst["max_box_diff"] = max(worst["max_box_diff"], paired[0])
        worst["max_score_diff"] = max(worst["max_score_diff"], paired[1])
    if worst["max_box_diff"] > box_tol:
        worst.update(ok=False, problem=f"boxes differ by up to {worst['max_box_diff']:.3g} px, scores by "
                                       f"{worst['max_score_diff']:.3g}")
    return worst
