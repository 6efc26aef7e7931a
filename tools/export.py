"""Export a trained detector for deployment (TorchScript or ONNX) and check it against the eager model.

    python tools/export.py work_dirs/NAME/model_K/model_final.pth --format torchscript|onnx [--out FILE]
        [--images IMAGE_OR_FOLDER ...]   # the check's images (default: the first of the model's val split)

Writes FILE (default: beside the checkpoint, model.torchscript.pt / model.onnx) and FILE.json with
the class names and input rules; exit 1 when the exported model's detections differ from the eager
model's on the check images.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from core.cli import EXIT_FAILED, run_guarded
from core.config import ConfigError
from core.data import image_paths, read_image
from core.errors import DataError
from detector.data.build import build_detection_data
from detector.data.dataset import to_tensor
from detector.data.transforms import resize_image
from detector.export import FORMATS, export, load_runner, parity
from detector.final import load_final


def check_images(paths: list[str] | None, cfg, n: int) -> list[torch.Tensor]:
    """The check's images, read and resized as evaluation does, as float [3, H, W] in 0..1."""
    if not paths:
        try:
            _, index = build_detection_data(cfg.data, train=False)
            paths = [r.path for r in index.records[:n]]
        except DataError as e:
            raise DataError(f"{e}; or give check images with --images") from None
    else:
        paths = image_paths(paths)[:n]
    if not paths:
        raise DataError("no images to check the export on: give some with --images")
    return [to_tensor(resize_image(read_image(p), cfg.data.test_scale, cfg.data.max_size)) for p in paths]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="model_final.pth from tools/train_det.py")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", help="the exported file (default: beside the checkpoint)")
    p.add_argument("--images", nargs="+", help="images or folders for the check (default: the val split's first)")
    p.add_argument("--check-images", type=int, default=8, help="how many images the check runs on")
    a = p.parse_args(argv)

    def body() -> int:
        model, state = load_final(a.checkpoint)
        cfg = state["cfg"]
        if model.proposal_source != "rpn":
            raise ConfigError(f"{a.checkpoint}: trained with model.proposals={model.proposal_source}; the export "
                              "takes an image alone, so only members that make their own regions (rpn) export")
        images = check_images(a.images, cfg, a.check_images)
        out = a.out or os.path.join(os.path.dirname(a.checkpoint),
                                    "model.torchscript.pt" if a.format == "torchscript" else "model.onnx")
        export(model, a.format, out, images[0], {"classes": state["classes"], "class_names": state["class_names"],
                                                   "test_scale": cfg.data.test_scale, "max_size": cfg.data.max_size})
        check = parity(model, load_runner(a.format, out), images)
        print(f"export: {out} ({os.path.getsize(out) / 2**20:.1f} MiB); check on {check['images']} images, "
              f"{check['detections']} detections: boxes within {check['max_box_diff']:.2g} px, scores within "
              f"{check['max_score_diff']:.2g} of the eager model")
        if not check["ok"]:
            print(f"export: the exported model disagrees with the eager model: {check['problem']}", file=sys.stderr)
            return EXIT_FAILED
        return 0

    return run_guarded("export", body)


if __name__ == "__main__":
    raise SystemExit(main())
