"""What can go wrong that a user can fix, and what training itself can hit. ``core.cli.run_guarded``
turns these into one line on stderr and an exit code (2 for a :class:`UserError`, 3 for a
:class:`NonFiniteLoss`); the other modules raise subclasses named for what they read
(``ConfigError``, ``CheckpointError``, ``DeviceError``, ``backbone.weights.WeightsError``)."""

from __future__ import annotations


class UserError(Exception):
    """Input a user can fix: a config, a data set, a weights or checkpoint file, a device. The
    message is one line that names the file or key and the fix."""


class DataError(UserError, ValueError):
    """A data set that cannot be used as it is; the message names the path and the fix."""


class BadImageError(DataError):
    """One image that cannot be decoded, or does not match its annotation: ``path`` and ``detail``
    (what is wrong, without the path) for the data report."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, detail


class NonFiniteLoss(RuntimeError):
    """A NaN or infinite loss: training stops and names the last good checkpoint."""


class ShardsFailed(RuntimeError):
    """Shards of a sharded run that failed on every try: named with their first images, so that
    nothing is dropped unsaid; the shards that were done stay on disk for the next run."""

    def __init__(self, what: str, failures: list, shards: int, show: int = 5) -> None:
        lines = [f"{len(failures)} of {shards} shards of {what} failed twice and are not in the output yet; "
                 "run the same command again to retry them (the finished shards are kept):"]
        for f in sorted(failures, key=lambda f: f.shard)[:show]:
            more = f" and {len(f.items) - 3} more" if len(f.items) > 3 else ""
            names = ", ".join(str(x) for x in f.items[:3]) + more
            lines.append(f"  shard {f.shard} ({names}): {f.error}")
        if len(failures) > show:
            lines.append(f"  ... and {len(failures) - show} more shards")
        super().__init__("\n".join(lines))
        self.failures = failures
