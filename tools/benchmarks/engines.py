"""``engines``: the same shards on the local engine and on Ray (started on this machine, as
``--engine ray`` starts it without an address), with 1 and 2 workers: Selective Search proposals
(make_proposals.py's chunks, the entry's fast setting) and a member detecting photos (infer.py's
shards), on tiny COCO val. Per run: the engine's start-up, images/s once its workers are up, and
the wall time; then ILSVRC DET's proposals projected onto machines of C cores from the measured
rate a core and the measured scaling from 1 to 2 workers."""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

from core.config import load_config
from core.engines import Engine, run_shards
from core.progress import progress_bar
from detector.config import DetConfig, build_model
from detector.data.coco import COCODet
from detector.final import save_final
from detector.inference.files import DetectRecipe
from detector.proposals.make import ChunkMaker
from detector.proposals.methods import SelectiveSearchRecipe
from detector.proposals.selective_search import SelectiveSearch, require_ximgproc

from .common import add_command
from .data import TINY_COCO

ILSVRC_DET_IMAGES = 476_688  # DET train (456,567) + val (20,121): docs/proposals.md


def add_parser(sub) -> None:
    c = add_command(sub, "engines", "make_proposals and infer shards, local against Ray, 1 and 2 workers", 1, 600,
                    1, 0, "cpu")
    c.add_argument("--coco", default=os.path.normpath(TINY_COCO))
    c.add_argument("--images", type=int, default=16, help="tiny COCO val photos for each run")
    c.add_argument("--shard", type=int, default=2, help="images a shard")
    c.add_argument("--machines", type=int, nargs="+", default=[1, 8, 32], help="machines in the projection")
    c.add_argument("--cores", type=int, default=32, help="cores a machine in the projection")
    c.set_defaults(run=run)


def timed(make_worker, items: list, shard: int, engine: Engine) -> tuple[float, float, float]:
    """(start-up s, images/s once started, wall s) of ``items`` in shards on ``engine``."""
    shards = [(i, items[s:s + shard]) for i, s in enumerate(range(0, len(items), shard))]
    marks = [time.perf_counter()]
    def clock():  # the moment the workers are up; no bar shown
        marks.append(time.perf_counter())
        return progress_bar(enabled=False)

    failures = run_shards(make_worker, shards, engine, lambda i, r: None, clock)
    end = time.perf_counter()
    if failures:
        raise RuntimeError(f"{len(failures)} shards failed: {failures[0].error}")
    return marks[1] - marks[0], len(items) / (end - marks[1]), end - marks[0]


def a_member(folder: str, size: int) -> str:
    """A C4 member with random weights (80 classes, the test scale ``size``), saved as train_det.py saves one."""
    overrides = ["model.weights=null", "model.head=c4", f"data.test_scale={size}", f"data.max_size={size * 5 // 3}"]
    cfg = load_config(DetConfig, "configs/toy_det.yaml", overrides)
    classes = [str(k) for k in range(80)]
    path = os.path.join(folder, "model_final.pth")
    save_final(path, build_model(cfg.model, len(classes)).eval(), cfg, classes, classes, {})
    return path


def run(args: argparse.Namespace) -> int:
    ann = os.path.join(args.coco, "annotations", "instances_val2017.json")
    if not os.path.isfile(ann):
        print(f"benchmark: no tiny COCO at {args.coco} (looked for {ann}): pass --coco DIR", file=sys.stderr)
        return 2
    require_ximgproc()
    records = COCODet(ann, os.path.join(args.coco, "val2017")).records[: args.images]
    paths = sorted(glob.glob(os.path.join(args.coco, "val2017", "*.jpg")))[: args.images]
    print(f"{len(records)} tiny-COCO val photos, shards of {args.shard}, {os.cpu_count()} CPU cores; Ray started on "
          "this machine for each run")
    print(f"{'work':<34} {'engine':<6} {'workers':>7} {'start s':>8} {'images/s':>9} {'wall s':>7}")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        member = a_member(tmp, args.size)
        works = {"proposals (Selective Search fast)": (ChunkMaker(SelectiveSearchRecipe(SelectiveSearch("fast")), 2000,
                                                                  False), records),
                 f"infer (C4 member, {args.size} px)": (DetectRecipe((member,), "shared", 0.3, "cpu", None),
                                                         [(k + 1, p) for k, p in enumerate(paths)])}
        for name, (maker, items) in works.items():
            for engine in ("local", "ray"):
                for workers in (1, 2):
                    start, rate, wall = timed(maker, items, args.shard, Engine(engine, workers, threads=1))
                    rates[name, engine, workers] = rate
                    print(f"{name:<34} {engine:<6} {workers:>7} {start:>8.1f} {rate:>9.2f} {wall:>7.1f}", flush=True)
    project(rates, "proposals (Selective Search fast)", args)
    return 0


def project(rates: dict, name: str, args: argparse.Namespace) -> None:
    """Hours for ILSVRC DET's proposals on N machines of C cores: each engine at its measured rate a
    worker (one thread) times C workers times its measured 2-worker efficiency, the machines apart
    (local: ``--shard K/N`` on each; ray: one cluster)."""
    print(f"\nILSVRC DET train + val ({ILSVRC_DET_IMAGES:,} images), the entry's fast Selective Search, on machines "
          f"of {args.cores} cores (a worker a core, at the 2-worker efficiency measured here):")
    print(f"{'engine':<6} {'img/s a core':>12} {'1->2 scaling':>12} " + " ".join(f"{f'{n} mach. h':>10}"
                                                                             for n in args.machines))
    for engine in ("local", "ray"):
        one, two = rates[name, engine, 1], rates[name, engine, 2]
        scaling = min(1.0, two / (2 * one))
        per_machine = one * args.cores * scaling
        hours = [ILSVRC_DET_IMAGES / (per_machine * n) / 3600 for n in args.machines]
        print(f"{engine:<6} {one:>12.2f} {scaling:>12.2f} " + " ".join(f"{h:>10.1f}" for h in hours))
