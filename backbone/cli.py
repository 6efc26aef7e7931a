"""What every tool does with what goes wrong: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

import sys
from typing import Callable

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DataError
from .engine import NonFiniteLoss
from .googlenet import WeightsError
from .runtime import shutdown_distributed


def run_guarded(name: str, body: Callable[[], int]) -> int:
    """Exit 2 for bad configs, data, weights and checkpoints; 3 for a non-finite loss; 130 when
    interrupted (with how to continue)."""
    try:
        return body()
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
