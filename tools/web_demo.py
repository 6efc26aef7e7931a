"""A web page to try trained detectors on: upload an image, set the threshold, pick a member or the
ensemble, see the boxes (gradio; ``pip install -e '.[web]'``; ``make web`` on the demo's members).

    python tools/web_demo.py configs/toy_det.yaml                       # every member of the config's work dir
    python tools/web_demo.py --checkpoints m0.pth m1.pth --port 7860
    python tools/web_demo.py configs/toy_det.yaml --examples "data/toy_ilsvrc/Data/DET/val/*.JPEG"

The page's function is also an API endpoint: ``gradio_client.Client(URL).predict(handle_file(IMAGE),
0.3, "ensemble", False, api_name="/detect")``.
"""

from __future__ import annotations

import argparse
import os

from core.checkpoint import CheckpointError
from core.cli import config_and_overrides, run_guarded
from core.config import load_config
from core.errors import UserError
from detector.api import expand_inputs
from detector.config import DetConfig
from detector.final import found_members

DEFAULT_CONFIG = "configs/toy_det.yaml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="*", help="[CONFIG] [key=value ...]: the work dir holding the members, the data")
    p.add_argument("--checkpoints", nargs="+", help="model_final.pth files (default: every member of the config's)")
    p.add_argument("--examples", help="images to offer (default: the first 8 of the config's validation images)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="auto")
    p.add_argument("--concurrency", type=int, default=4, help="requests run side by side (more wait in the queue)")
    a = p.parse_intermixed_args(argv)
    try:
        config, overrides = config_and_overrides(a.args, DEFAULT_CONFIG)
    except ValueError as e:
        p.error(str(e))
    return run_guarded("web_demo", lambda: serve(a, load_config(DetConfig, config, overrides)))


def examples_of(cfg: DetConfig, given: str | None) -> list[str]:
    if given:
        return expand_inputs(given)
    folder = os.path.join(cfg.data.root, "Data", "DET", cfg.data.val_split)
    return expand_inputs(folder)[:8] if os.path.isdir(folder) else []


def serve(a: argparse.Namespace, cfg: DetConfig) -> int:
    try:
        import gradio  # noqa: F401 - the optional extra, checked before anything is loaded
    except ImportError:
        raise UserError("the web page needs gradio: pip install -e '.[web]'") from None
    from detector.webapp import Detectors, build_page

    paths = a.checkpoints or found_members(cfg.work_dir, cfg.name)
    if not paths:
        raise CheckpointError(f"no trained members in {os.path.join(cfg.work_dir, cfg.name)}: train some "
                              "(make demo, tools/train_det.py) or give --checkpoints")
    names = [os.path.basename(os.path.dirname(p)) for p in paths]
    if len(set(names)) != len(names):
        names = [f"model_{k}" for k in range(len(paths))]
    detectors = Detectors(dict(zip(names, paths)), a.device)
    detectors.get(detectors.choices[-1], False)  # load (and check) the members before serving
    page = build_page(detectors, examples_of(cfg, a.examples))
    print(f"web_demo: {len(paths)} member(s) on http://{a.host}:{a.port} (Ctrl-C stops it)", flush=True)
    page.queue(default_concurrency_limit=a.concurrency).launch(server_name=a.host, server_port=a.port,
                                                               show_error=False, quiet=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
