"""Train one GoogLeNet Faster R-CNN (one ensemble member).

    python tools/train_det.py CONFIG [key=value ...]          # e.g. configs/ilsvrc_det.yaml model_index=3
    python tools/train_det.py CONFIG --ensemble 6 --jobs 2   # members 0..5, two at a time
    torchrun --nproc_per_node N tools/train_det.py CONFIG [key=value ...]
"""

from __future__ import annotations

import argparse
import os

from core.cli import run_guarded
from core.config import load_config
from core.runtime import is_main_process
from detector.config import DetConfig
from detector.train import run, train_ensemble


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a detection config, e.g. configs/toy_det.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=0.01 model_index=2")
    p.add_argument("--ensemble", type=int, metavar="N",
                   help="train members 0..N-1 (model_index), each in its own process")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="with --ensemble: members trained at once, the CPU cores shared out between them (with "
                        "several GPUs: one each); on a CPU, 2 jobs of 1 thread train about 1.8x as fast as 1 of 2")
    a = p.parse_intermixed_args(argv)
    if a.ensemble is not None and a.ensemble < 1 or a.jobs < 1:
        p.error("--ensemble and --jobs take a number >= 1")
    if a.jobs > 1 and a.ensemble is None:
        p.error("--jobs runs several members at once: give --ensemble N too")
    if a.ensemble and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        p.error("--ensemble starts a process per member: run it with python, not torchrun (or torchrun one "
                "member at a time with model_index=K)")

    def ensemble() -> int:
        code, lines = train_ensemble(a.config, a.overrides, a.ensemble, a.jobs, script=os.path.abspath(__file__))
        print("\n".join(["train_det: the ensemble's members", *lines]))
        return code

    def body() -> int:
        cfg = load_config(DetConfig, a.config, a.overrides)
        metrics = run(cfg)
        if is_main_process():
            print(f"train_det: done; {os.path.join(cfg.out_dir, 'model_final.pth')}; {cfg.metric_name} "
                  f"{100 * metrics['map']:.2f}")
        return 0

    return run_guarded("train_det", ensemble if a.ensemble else body)


if __name__ == "__main__":
    raise SystemExit(main())
