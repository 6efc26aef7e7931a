"""Precompute region proposals for every image of a split into one file (R-CNN's practice; the 2014
entry's Selective Search, and a trained member's RPN standing in for its MultiBox boxes), then print
the proposal-recall table.

    python tools/make_proposals.py CONFIG --method ss --split val2 [--out FILE] [--workers N]
    python tools/make_proposals.py CONFIG --method ss --split train --mode quality --k-scale 1
    python tools/make_proposals.py CONFIG --method rpn --checkpoint model_final.pth --top-n 200 --split val2
    python tools/make_proposals.py CONFIG --method ss --split train --shard 0/4     # on machine 0 of 4
    python tools/make_proposals.py CONFIG --method ss --split train --merge         # join the shards' chunks
    python tools/make_proposals.py CONFIG --method ss --split train --engine ray --ray-address HEAD:6379

Resumable: run the same command again after an interruption. The file format, the settings and
their costs: docs/proposals.md.
"""

from __future__ import annotations

import argparse
import os

from core.checkpoint import CheckpointError
from core.cli import config_and_overrides, run_guarded
from core.config import ConfigError, load_config
from core.engines import add_engine_arguments, engine_of
from detector.config import DetConfig
from detector.final import load_final
from detector.proposals.make import CHUNK, Job, make
from detector.proposals.methods import RPNRecipe, SelectiveSearchRecipe
from detector.proposals.selective_search import SelectiveSearch, require_ximgproc

DEFAULT_CONFIG = "configs/ilsvrc_det_2014.yaml"


def shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, got {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"need 0 <= K < N, got {text!r}")
    return k, n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("args", nargs="*", help="[CONFIG] [key=value ...] (the data: data.root, the splits)")
    p.add_argument("--method", choices=("ss", "rpn"), default="ss")
    p.add_argument("--split", help="the split to cover (default: data.val_split)")
    p.add_argument("--out", help="the file (default: work_dirs/proposals/<name>_<method>_<split>.npz)")
    add_engine_arguments(p, "processes or actors at once")
    p.add_argument("--shard", type=shard, default=(0, 1), metavar="K/N", help="do shard K of N (machines)")
    p.add_argument("--chunk", type=int, default=CHUNK, help="images per chunk (the unit of resuming and sharding)")
    p.add_argument("--merge", action="store_true", help="only join the chunks already made (after --shard runs)")
    p.add_argument("--top-n", type=int, default=None, help="boxes an image at most (ss: 2000 by default; rpn: 200)")
    p.add_argument("--mode", choices=("fast", "quality"), default="fast", help="ss: Uijlings et al.'s modes")
    p.add_argument("--k-scale", type=float, default=2.0,
                   help="ss: graph-segmentation k as a multiple of the authors' (2: the entry's 2x superpixels)")
    p.add_argument("--max-side", type=int, default=0, help="ss: segment a copy this long at most (0: as stored)")
    p.add_argument("--checkpoint", help="rpn: the member's model_final.pth")
    return p


def job_for(a, cfg: DetConfig) -> Job:
    split = a.split or cfg.data.val_split
    top_n = a.top_n or (2000 if a.method == "ss" else 200)
    out = a.out or os.path.join(cfg.work_dir, "proposals", f"{cfg.name}_{a.method}_{split}.npz")
    common = {"split": split, "out": out, "top_n": top_n, "chunk": a.chunk, "shard": a.shard, "merge_only": a.merge,
              "progress": cfg.progress}
    if a.method == "ss":
        require_ximgproc()
        ss = SelectiveSearch(a.mode, a.k_scale, max_side=a.max_side)
        return Job(settings={"method": "ss", **ss.settings()}, recipe=SelectiveSearchRecipe(ss), engine=engine_of(a),
                   **common)
    if not a.checkpoint:
        raise ConfigError("--method rpn needs --checkpoint model_final.pth (a member trained with an RPN)")
    model, _ = load_final(a.checkpoint)
    if model.rpn is None:
        raise CheckpointError(f"{a.checkpoint}: trained with model.proposals=external, it has no RPN to make "
                              "proposals with; give a member trained with model.proposals=rpn or both")
    checkpoint = os.path.abspath(a.checkpoint)
    recipe = RPNRecipe(checkpoint, cfg.device, cfg.data.test_scale, cfg.data.max_size, top_n)
    settings = {"method": "rpn", "checkpoint": checkpoint, "test_scale": cfg.data.test_scale,
                "max_size": cfg.data.max_size}
    gpus = 0.0 if cfg.device == "cpu" else -1.0  # ray: one GPU an actor where the cluster has them
    return Job(settings=settings, recipe=recipe, scores=True, engine=engine_of(a, gpus), **common)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    a = p.parse_intermixed_args(argv)
    try:
        config, overrides = config_and_overrides(a.args, DEFAULT_CONFIG)
    except ValueError as e:
        p.error(str(e))
    if (a.workers is not None and a.workers < 1) or a.chunk < 1 or (a.top_n is not None and a.top_n < 1):
        p.error("--workers, --chunk and --top-n must be >= 1")

    def body() -> int:
        cfg = load_config(DetConfig, config, overrides)
        make(cfg, job_for(a, cfg))
        return 0

    return run_guarded("make_proposals", body)


if __name__ == "__main__":
    raise SystemExit(main())
