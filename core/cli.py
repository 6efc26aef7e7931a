"""What every tool does with what goes wrong (one line on stderr and an exit code, no traceback),
and the ``[CONFIG] key=value ...`` arguments the training and scoring tools share."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import NonFiniteLoss, ShardsFailed, UserError

# Exit codes of every tool.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def run_guarded(name: str, body: Callable[[], int]) -> int:
    """``body()``'s exit code; 2 for input a user can fix (configs, data, weights, checkpoints,
    devices, an output folder that holds something else), 1 for shards that failed on every try (one
    line, then one a shard), 3 for a non-finite loss, 130 when interrupted (with how to continue).
    Each is one line on stderr, prefixed with ``name``."""
    try:
        return body()
    except (UserError, FileExistsError) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as e:
        # the tools check the paths a user gives them and name the key to fix; this is the net under
        # those checks, so that a path missed there is still one line and not a traceback
        print(f"{name}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NonFiniteLoss as e:
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    except ShardsFailed as e:  # the summary names every shard left out, with its images
        print(f"{name}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{name}: interrupted; run the same command again (resume=auto) to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if "torch.distributed" in sys.modules:  # a tool that never loaded torch has nothing to shut down
            from .runtime import shutdown_distributed

            shutdown_distributed()


def config_and_overrides(args: list[str], default: str) -> tuple[str, list[str]]:
    """``[CONFIG] [key=value ...]``: the config (``default`` when the first argument is an
    override) and the overrides. Anything else is a :class:`ValueError` to report as a usage error."""
    if args and "=" not in args[0]:
        config, overrides = args[0], list(args[1:])
    else:
        config, overrides = default, list(args)
    stray = [x for x in overrides if "=" not in x]
    if stray:
        raise ValueError(f"expected one CONFIG then key=value overrides, got {stray[0]!r} after them")
    return config, overrides
