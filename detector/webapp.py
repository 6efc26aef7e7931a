"""The web page of ``tools/web_demo.py`` (gradio >= 6, ``pip install -e '.[web]'``): upload an image
or pick a validation image, set the score threshold, choose a member or the ensemble (and
test-time augmentation), and see the detections drawn with a table of boxes, classes and scores;
a video comes back drawn. ``detect`` is also the gradio API endpoint ``/detect``.

Every model runs through :class:`~detector.api.Detector` (the path of ``infer.py`` and
``eval_map.py``), built once a choice and kept. A file that is not an image is one message on the
page, never a stack trace.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

from core.atomic import write_png_atomic
from core.data import read_image
from core.errors import BadImageError, DataError

from .api import Detections, Detector
from .media import VideoOutput, frames, open_capture
from .visualize import draw_boxes, enlarged

ENSEMBLE = "ensemble"
COLUMNS = ["class", "score", "x1", "y1", "x2", "y2"]


class Detectors:
    """A :class:`Detector` a (choice, TTA), made when first asked for; one model call at a time
    each (the page's queue runs requests side by side)."""

    def __init__(self, members: dict[str, str], device: str = "auto", keep_seconds: float = 3600) -> None:
        self.members, self.device, self.keep_seconds = members, device, keep_seconds
        self.folder = tempfile.mkdtemp(prefix="googlenet-det-web-")
        self.choices = list(members) + ([ENSEMBLE] if len(members) > 1 else [])
        self.made: dict[tuple[str, bool], tuple[Detector, threading.Lock]] = {}
        self.lock = threading.Lock()

    def get(self, choice: str, tta: bool) -> tuple[Detector, threading.Lock]:
        if choice not in self.choices:
            raise DataError(f"no model {choice!r}; choose one of {', '.join(self.choices)}")
        with self.lock:
            if (choice, tta) not in self.made:
                paths = list(self.members.values()) if choice == ENSEMBLE else [self.members[choice]]
                self.made[choice, tta] = (Detector.ensemble(paths, device=self.device, tta=tta), threading.Lock())
            return self.made[choice, tta]

    def new_path(self, suffix: str) -> str:
        """A file of its own for one answer; answers older than ``keep_seconds`` are deleted."""
        now = time.time()
        for old in os.scandir(self.folder):
            try:
                if now - old.stat().st_mtime > self.keep_seconds:
                    os.unlink(old.path)
            except FileNotFoundError:  # another request's sweep took it first
                pass
        return os.path.join(self.folder, uuid.uuid4().hex + suffix)

    def drawn(self, bgr) -> str:
        """``bgr`` as a PNG of its own. The page gets a file, not an array: gradio writes an array
        to a file named by its content without a rename, so two requests with the same answer
        truncate each other's file while it is being sent (20 concurrent requests, seen); a file
        is copied under a temporary name and renamed."""
        path = self.new_path(".png")
        write_png_atomic(path, bgr)
        return path


def kept(d: Detections, min_score: float) -> Detections:
    """``d``'s detections scoring at least ``min_score``."""
    keep = d.scores >= min_score
    return Detections(d.boxes[keep], d.scores[keep], d.labels[keep], [n for n, k in zip(d.names, keep) if k], d.size,
                      d.source)


def refused(message: str) -> Exception:
    """Bad input's answer: the message on the page, and one line in the server's log where gradio
    would print a traceback."""
    import gradio as gr

    print(f"web_demo: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def detect(detectors: Detectors, image_path: str | None, min_score: float, choice: str, tta: bool):
    """(the drawn image's path, the table's rows, a one-line summary)."""
    if not image_path:
        raise refused("upload an image or pick one of the examples")
    try:
        image = read_image(image_path)
        det, lock = detectors.get(choice, tta)
    except (BadImageError, DataError) as e:
        what = getattr(e, "detail", e)
        raise refused(f"{os.path.basename(image_path)}: {what}; upload a JPEG or PNG image") from None
    with lock:
        (d,) = det(image)
    d = kept(d, min_score)
    rows = [[n, round(float(s), 3), *[round(float(v), 1) for v in b]] for b, s, n in zip(d.boxes, d.scores, d.names)]
    said = f"{len(rows)} detection(s) at score >= {min_score:.2f} ({choice}{', TTA' if tta else ''})"
    big, f = enlarged(image)  # the miniature's 150 px images enlarged, so that the names can be read
    return detectors.drawn(draw_boxes(big, d.boxes * f, d.labels, det.class_names, scores=d.scores)), rows, said


def detect_video(detectors: Detectors, video_path: str | None, min_score: float, choice: str, tta: bool,
                 max_frames: int = 300) -> str:
    """The video with its detections drawn (MP4, at most ``max_frames`` frames)."""
    if not video_path:
        raise refused("upload a video")
    try:
        cap, fps = open_capture(video_path)
        det, lock = detectors.get(choice, tta)
    except (BadImageError, DataError) as e:
        raise refused(f"{os.path.basename(video_path)}: {e}; upload an MP4 or AVI video") from None
    out = detectors.new_path(".mp4")
    with VideoOutput(out, fps) as video:
        for rgb in frames(cap, max_frames):
            with lock:
                (d,) = det(rgb)
            video.write(det.draw(rgb, kept(d, min_score)))
    return out


def build_page(detectors: Detectors, examples: list[str], title: str = "GoogLeNet detector"):
    """The gradio page; the image function is the API endpoint ``/detect``, the video one ``/detect_video``."""
    import gradio as gr

    def bound(fn: Callable) -> Callable:
        return lambda *args: fn(detectors, *args)

    # gradio's copies kept an hour; no usage reports (machines without the internet wait on them)
    with gr.Blocks(title=title, delete_cache=(600, 3600), analytics_enabled=False) as page:
        gr.Markdown(f"# {title}\nUpload an image (or pick one below), then set the threshold and the model.")
        with gr.Row():
            with gr.Column():
                # a file, not gr.Image: gr.Image decodes uploads itself and answers a file that is not an
                # image with a stack trace in the log and a bare "Error" on the page; here read_image
                # decodes it as everywhere else, and names what is wrong
                image = gr.File(file_types=["image"], type="filepath", label="image", elem_id="input-image")
                score = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="score threshold", elem_id="score")
                choice = gr.Dropdown(detectors.choices, value=detectors.choices[-1], label="model", elem_id="model")
                tta = gr.Checkbox(False, label="test-time augmentation (flips, scales)", elem_id="tta")
                run = gr.Button("Detect", variant="primary", elem_id="detect")
            with gr.Column():
                shown = gr.Image(type="filepath", label="detections", elem_id="detections", interactive=False)
                summary = gr.Markdown(elem_id="summary")
        table = gr.Dataframe(headers=COLUMNS, label="boxes (the image's pixels)", elem_id="table", interactive=False)
        if examples:
            gr.Examples(examples, inputs=image, label="validation images")
        inputs = [image, score, choice, tta]
        run.click(bound(detect), inputs, [shown, table, summary], api_name="detect")
        # moving the threshold (or the model) detects again, once an image is there
        again = bound(lambda d, path, *rest: detect(d, path, *rest) if path else (gr.skip(),) * 3)
        for control in (score, choice, tta):
            control.change(again, inputs, [shown, table, summary], api_name=False, trigger_mode="always_last")
        with gr.Accordion("video", open=False):
            video_in = gr.Video(label="video", elem_id="video-in")
            video_out = gr.Video(label="detections", elem_id="video-out")
            gr.Button("Detect in the video", elem_id="detect-video").click(
                bound(detect_video), [video_in, score, choice, tta], video_out, api_name="detect_video")
    return page
