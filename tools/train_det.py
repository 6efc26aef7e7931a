"""Train one GoogLeNet Faster R-CNN (one ensemble member).

    python tools/train_det.py CONFIG [key=value ...]          # e.g. configs/ilsvrc_det.yaml model_index=3
    torchrun --nproc_per_node N tools/train_det.py CONFIG [key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from backbone.checkpoint import CheckpointError  # noqa: E402
from backbone.config import ConfigError, load_config  # noqa: E402
from backbone.data import DataError  # noqa: E402
from backbone.engine import NonFiniteLoss  # noqa: E402
from backbone.googlenet import WeightsError  # noqa: E402
from backbone.runtime import shutdown_distributed  # noqa: E402
from detector.train import DetConfig, run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a detection config, e.g. configs/toy_det.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=0.01 model_index=2")
    a = p.parse_args(argv)
    name = "train_det"
    try:
        cfg = load_config(DetConfig, a.config, a.overrides)
        metrics = run(cfg)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{name}: done; {os.path.join(cfg.out_dir, 'model_final.pth')}; {cfg.eval_metric} mAP "
                  f"{100 * metrics['map']:.2f}")
        return 0
    except (ConfigError, DataError, WeightsError, CheckpointError, FileExistsError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{name}: interrupted; run the same command again (resume=auto) to continue", file=sys.stderr)
        return 130
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    raise SystemExit(main())
