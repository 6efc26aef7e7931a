"""Detect objects in images with a trained detector: PNGs with the detections drawn, and JSON.

    python tools/infer.py work_dirs/NAME/model_K/model_final.pth IMAGE_OR_FOLDER... --out DIR [--score 0.3]
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backbone.checkpoint import CheckpointError, write_json_atomic  # noqa: E402
from backbone.config import ConfigError  # noqa: E402
from backbone.data import IMAGE_EXTENSIONS, BadImageError, read_image  # noqa: E402
from backbone.runtime import select_device  # noqa: E402
from detector.data.sample import DetSample  # noqa: E402
from detector.data.transforms import DetTransform  # noqa: E402
from detector.train import load_final  # noqa: E402
from detector.visualize import draw_boxes  # noqa: E402


def image_paths(inputs: list[str]) -> list[str]:
    out = []
    for p in inputs:
        if os.path.isdir(p):
            out += sorted(os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="model_final.pth from tools/train_det.py")
    p.add_argument("inputs", nargs="+", help="images or folders of images")
    p.add_argument("--out", required=True, help="folder for <name>.png and detections.json")
    p.add_argument("--score", type=float, default=0.3, help="draw and keep detections scoring at least this")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    try:
        model, state = load_final(a.checkpoint)
        paths = image_paths(a.inputs)
    except (CheckpointError, ConfigError, FileNotFoundError) as e:
        print(f"infer: {e}", file=sys.stderr)
        return 2
    device = select_device(a.device)
    model.to(device)
    cfg, names = state["cfg"], state["class_names"]
    resize = DetTransform((cfg.data.test_scale,), cfg.data.max_size, train=False)
    os.makedirs(a.out, exist_ok=True)
    results, skipped = {}, 0
    for path in paths:
        try:
            img = read_image(path)  # EXIF orientation applied: the image as people see it
        except BadImageError as e:
            print(f"infer: skipped {e}", file=sys.stderr)
            skipped += 1
            continue
        h, w = img.shape[:2]
        s = resize(DetSample(img, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool), path, (h, w)))
        x = torch.from_numpy(np.ascontiguousarray(s.image)).permute(2, 0, 1).float().div_(255).to(device)
        with torch.inference_mode():
            pred = model([x])[0]
        keep = pred["scores"] >= a.score
        scale = np.array([w / s.image.shape[1], h / s.image.shape[0]] * 2, np.float32)
        boxes = pred["boxes"][keep].cpu().numpy() * scale
        scores, labels = pred["scores"][keep].cpu().numpy(), pred["labels"][keep].cpu().numpy()
        stem = os.path.splitext(os.path.basename(path))[0]
        cv2.imwrite(os.path.join(a.out, stem + ".png"), draw_boxes(img, boxes, labels, names, scores=scores))
        results[path] = [{"box_xyxy": [round(float(v), 1) for v in b], "score": round(float(sc), 4),
                          "label": int(lab), "name": names[int(lab) - 1]} for b, sc, lab in zip(boxes, scores, labels)]
    write_json_atomic(os.path.join(a.out, "detections.json"), results)
    print(f"infer: {len(results)} image(s) -> {a.out}/ (PNG per image, detections.json)"
          + (f"; {skipped} unreadable skipped" if skipped else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
