"""Train one GoogLeNet Faster R-CNN (one ensemble member).

    python tools/train_det.py CONFIG [key=value ...]          # e.g. configs/ilsvrc_det.yaml model_index=3
    torchrun --nproc_per_node N tools/train_det.py CONFIG [key=value ...]
"""

from __future__ import annotations

import argparse
import os

from core.cli import run_guarded
from core.config import load_config
from core.runtime import is_main_process
from detector.config import DetConfig
from detector.train import run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a detection config, e.g. configs/toy_det.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=0.01 model_index=2")
    a = p.parse_args(argv)

    def body() -> int:
        cfg = load_config(DetConfig, a.config, a.overrides)
        metrics = run(cfg)
        if is_main_process():
            print(f"train_det: done; {os.path.join(cfg.out_dir, 'model_final.pth')}; {cfg.eval_metric} mAP "
                  f"{100 * metrics['map']:.2f}")
        return 0

    return run_guarded("train_det", body)


if __name__ == "__main__":
    raise SystemExit(main())
