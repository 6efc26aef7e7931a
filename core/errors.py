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
