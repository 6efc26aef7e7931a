"""Pretrain GoogLeNet on ImageNet with its auxiliary heads, then export the backbone.

    python tools/pretrain_backbone.py [CONFIG] [key=value ...]
    python tools/pretrain_backbone.py [CONFIG] --eval-only A.pth [B.pth ...] [--crops 1 10 144] [--out F.json]
    torchrun --nproc_per_node N tools/pretrain_backbone.py [CONFIG] [key=value ...]

CONFIG defaults to configs/pretrain_imagenet.yaml; configs/pretrain_toy.yaml is the miniature.
"""

from __future__ import annotations

import argparse
import os

from backbone.pretrain.config import PretrainConfig
from backbone.pretrain.run import run
from backbone.pretrain.table3 import format_table, score
from core.atomic import write_json_atomic
from core.cli import config_and_overrides, run_guarded
from core.config import load_config
from core.runtime import is_main_process

DEFAULT_CONFIG = "configs/pretrain_imagenet.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("args", nargs="*", metavar="CONFIG | key=value",
                        help=f"a YAML config (default {DEFAULT_CONFIG}), then dotted overrides, e.g. optim.lr=0.02")
    parser.add_argument("--eval-only", nargs="+", metavar="WEIGHTS",
                        help="score checkpoints, backbone.pth exports or bvlc_googlenet.caffemodel, and their "
                             "ensemble (the paper's Table 3); no training")
    parser.add_argument("--crops", type=int, nargs="+", choices=(1, 10, 144),
                        help="test-time crops, one or more counts (default: eval_crops)")
    parser.add_argument("--out", help="--eval-only: the table as JSON (default: <work_dir>/<name>/table3.json)")
    ns = parser.parse_intermixed_args(argv)
    try:
        config, overrides = config_and_overrides(ns.args, DEFAULT_CONFIG)
    except ValueError as e:
        parser.error(str(e))

    def body() -> int:
        cfg = load_config(PretrainConfig, config, overrides)
        if ns.eval_only:
            result = score(cfg, ns.eval_only, ns.crops or [cfg.eval_crops])
            if is_main_process():
                out = ns.out or os.path.join(cfg.out_dir, "table3.json")
                write_json_atomic(out, result)
                print(format_table(result))
                print(f"pretrain_backbone: the table is in {out}")
            return 0
        if ns.crops:
            if len(ns.crops) > 1:
                parser.error("training scores one crop count: give --crops once, or use --eval-only")
            cfg.eval_crops = ns.crops[0]
        metrics = run(cfg)
        if is_main_process():
            print(f"pretrain_backbone: done; {os.path.join(cfg.out_dir, 'backbone.pth')} exported; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if k.endswith(("top1", "top5"))))
        return 0

    return run_guarded("pretrain_backbone", body)


if __name__ == "__main__":
    raise SystemExit(main())
