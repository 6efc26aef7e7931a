"""Detect objects in images with a trained detector: PNGs with the detections drawn, and JSON.

    python tools/infer.py work_dirs/NAME/model_K/model_final.pth IMAGE_OR_FOLDER... --out DIR [--score 0.3]

A member trained on external proposals (model.proposals external or both) gets Selective Search's
boxes for each image (the entry's fast setting), as tools/make_proposals.py makes them by default.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from core.atomic import write_json_atomic, write_png_atomic
from core.cli import run_guarded
from core.data import image_paths, read_image
from core.errors import BadImageError
from core.runtime import select_device
from detector.data.dataset import to_tensor
from detector.data.transforms import resize_image
from detector.final import load_final
from detector.proposals.selective_search import SelectiveSearch
from detector.visualize import draw_boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="model_final.pth from tools/train_det.py")
    p.add_argument("inputs", nargs="+", help="images or folders of images")
    p.add_argument("--out", required=True, help="folder for <name>.png and detections.json")
    p.add_argument("--score", type=float, default=0.3, help="draw and keep detections scoring at least this")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    return run_guarded("infer", lambda: infer(a.checkpoint, a.inputs, a.out, a.score, a.device))


def infer(checkpoint: str, inputs: list[str], out: str, min_score: float, device_choice: str) -> int:
    model, state = load_final(checkpoint)
    paths = image_paths(inputs)
    device = select_device(device_choice)
    model.to(device)
    cfg, names = state["cfg"], state["class_names"]
    results, skipped = {}, 0
    for path in paths:
        try:
            img = read_image(path)  # EXIF orientation applied: the image as people see it
        except BadImageError as e:
            print(f"infer: skipped {e}", file=sys.stderr)
            skipped += 1
            continue
        h, w = img.shape[:2]
        resized = resize_image(img, cfg.data.test_scale, cfg.data.max_size)
        scale = np.array([w / resized.shape[1], h / resized.shape[0]] * 2, np.float32)
        with torch.inference_mode():
            pred = model([to_tensor(resized).to(device)], proposals=regions(model, img, scale, cfg))[0]
        keep = pred["scores"] >= min_score
        boxes = pred["boxes"][keep].cpu().numpy() * scale
        scores, labels = pred["scores"][keep].cpu().numpy(), pred["labels"][keep].cpu().numpy()
        stem = os.path.splitext(os.path.basename(path))[0]
        write_png_atomic(os.path.join(out, stem + ".png"), draw_boxes(img, boxes, labels, names, scores=scores))
        results[path] = [{"box_xyxy": [round(float(v), 1) for v in b], "score": round(float(sc), 4),
                          "label": int(lab), "name": names[int(lab) - 1]} for b, sc, lab in zip(boxes, scores, labels)]
    write_json_atomic(os.path.join(out, "detections.json"), results)
    print(f"infer: {len(results)} image(s) -> {out}/ (PNG per image, detections.json)"
          + (f"; {skipped} unreadable skipped" if skipped else ""))
    return 0


def regions(model, image: np.ndarray, scale: np.ndarray, cfg) -> list[torch.Tensor] | None:
    """A member trained on external proposals gets Selective Search's (the entry's fast setting,
    ``data.max_proposals`` of them) in the resized image's pixels; an RPN member makes its own."""
    if model.proposal_source == "rpn":
        return None
    boxes = SelectiveSearch("fast")(image)[: cfg.data.max_proposals] / scale
    return [torch.from_numpy(boxes).to(next(model.parameters()).device)]


if __name__ == "__main__":
    raise SystemExit(main())
