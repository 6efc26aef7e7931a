"""Detect objects with trained detectors: images, folders, globs, videos or a camera.

    python tools/infer.py MODEL_FINAL.PTH INPUT... --out DIR [--score 0.3]
    python tools/infer.py m0.pth "photos/*.jpg" clip.mp4 --with m1.pth m2.pth --method shared --out DIR
    python tools/infer.py m0.pth --webcam 0 --max-frames 300 --out DIR
    python tools/infer.py m0.pth "/data/photos/**/*.jpg" --engine ray --ray-address HEAD:6379 --no-draw --out DIR

Images: <name>.png with the detections drawn, and detections.json for all of them (COCO results:
image_id 1..N in input order, file_name, category_id = the label, category_name, bbox xywh in the
image's pixels, score). A video: <name>_det.mp4 drawn and <name>.json (per frame: its detections);
the camera: webcam_<N>_det.mp4 and webcam_<N>.json. ``--with`` adds ensemble members (combined by
``--method``, as eval_map.py combines them). Members trained on external proposals get Selective
Search's boxes for each image (the entry's fast setting).

Images are detected in shards of ``--shard`` images, each written to DIR/detections.json.parts/ as
it is done: run the same command again after an interruption and only the missing shards are
run. ``--workers N`` runs shards in N processes; ``--engine ray`` on the actors of a Ray cluster
(one model replica an actor, one GPU each where the cluster has them). Videos and the camera run
in this process.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.atomic import write_json_atomic
from core.cli import run_guarded
from core.engines import add_engine_arguments, engine_of
from core.progress import progress_bar
from core.runtime import select_device
from detector.api import Detector, expand_inputs
from detector.inference import METHODS
from detector.inference.files import SHARD, DetectRecipe, detect_files
from detector.media import VideoOutput, frames, is_video, open_capture


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="model_final.pth from tools/train_det.py")
    p.add_argument("inputs", nargs="*", help="images, folders, globs (quoted) and videos")
    p.add_argument("--with", dest="more", nargs="+", default=[], metavar="PTH", help="more ensemble members")
    p.add_argument("--method", choices=METHODS, default="shared")
    p.add_argument("--webcam", type=int, metavar="N", help="read camera N instead of (or after) the inputs")
    p.add_argument("--max-frames", type=int, help="stop a video or the camera after this many frames")
    p.add_argument("--out", required=True, help="folder for the drawn images and videos and the JSON")
    p.add_argument("--score", type=float, default=0.3, help="draw and keep detections scoring at least this")
    p.add_argument("--device", default="auto")
    p.add_argument("--draw", action=argparse.BooleanOptionalAction, default=True, help="write the drawn images")
    p.add_argument("--shard", type=int, default=SHARD, help="images a shard (the unit of resuming and of work)")
    add_engine_arguments(p, "processes or actors at once")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    a = p.parse_args(argv)
    if not a.inputs and a.webcam is None:
        p.error("give images, folders, globs or videos, or --webcam N")
    if a.shard < 1 or (a.workers is not None and a.workers < 1):
        p.error("--shard and --workers must be >= 1")
    return run_guarded("infer", lambda: infer(a))


def infer(a: argparse.Namespace) -> int:
    members = [a.checkpoint, *a.more]
    videos = [x for x in a.inputs if is_video(x)]
    # the members checked here first (one line for a bad file); they run here only for videos and
    # the camera, the images' workers load their own
    select_device(a.device)  # a device that is not there: one line, before any work
    here = a.device if videos or a.webcam is not None else "cpu"
    det = Detector.ensemble(members, device=here, method=a.method, min_score=a.score)
    images = expand_inputs([x for x in a.inputs if not is_video(x)]) if len(videos) < len(a.inputs) else []
    if images:
        recipe = DetectRecipe(tuple(members), a.method, a.score, a.device, a.out if a.draw else None)
        gpus = 0.0 if a.device == "cpu" else -1.0  # ray: one GPU an actor where the cluster has them
        results, skipped = detect_files(recipe, images, a.out, engine_of(a, gpus), a.shard, a.progress)
        for why in skipped:
            print(f"infer: skipped {why}", file=sys.stderr)
        folder = os.path.join(a.out, "")  # one trailing separator, given or not
        drawn = "PNG per image, detections.json" if a.draw else "detections.json"
        print(f"infer: {len(images) - len(skipped)} image(s), {len(results)} detections -> {folder} ({drawn})"
              + (f"; {len(skipped)} unreadable skipped" if skipped else ""))
    for v in videos:
        detect_video(det, v, os.path.splitext(os.path.basename(v))[0], a)
    if a.webcam is not None:
        detect_video(det, a.webcam, f"webcam_{a.webcam}", a)
    return 0


def detect_video(det: Detector, source: str | int, stem: str, a: argparse.Namespace) -> None:
    cap, fps = open_capture(source)
    per_frame = []
    path = os.path.join(a.out, f"{stem}_det.mp4")
    with VideoOutput(path, fps) as video:
        try:
            for k, rgb in enumerate(progress_bar(frames(cap, a.max_frames), desc=stem, enabled=a.progress)):
                (d,) = det(rgb)
                video.write(det.draw(rgb, d))
                per_frame.append({"frame": k, "detections": d.to_coco(k + 1)})
        except KeyboardInterrupt:  # the camera runs until stopped: keep what was seen
            print(f"infer: stopped at frame {len(per_frame)}", file=sys.stderr)
    write_json_atomic(os.path.join(a.out, f"{stem}.json"), per_frame)
    print(f"infer: {stem}: {len(per_frame)} frame(s) -> {path}, {stem}.json")


if __name__ == "__main__":
    raise SystemExit(main())
