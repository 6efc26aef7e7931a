"""What reading a data set skipped or fixed, every item of it.

A :class:`DataReport` keeps one :class:`Finding` per item (the file, what was wrong, what was done);
the console gets counts per kind and a few examples (:meth:`DataReport.summary`), the run's work
dir the complete list as JSON lines (:func:`publish`), so that 30 bad files in a 460k-image
training set are named, not only counted.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

from .atomic import write_text_atomic

# Examples printed under a summary line; the file holds the rest.
EXAMPLES = 3


@dataclass(frozen=True)
class Finding:
    kind: str  # what was wrong, as counted: "inverted boxes"
    action: str  # what was done: "dropped", "image skipped", "clipped for training", ...
    file: str  # the file at fault (an annotation file, an image)
    detail: str  # the specifics: "n02084071 box (20, 5, 10, 15) has max < min"

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.action})"

    def message(self) -> str:
        return f"{self.file}: {self.detail}"


@dataclass
class DataReport:
    """Every :class:`Finding` of a read, an epoch or a run, in the order met."""

    items: list[Finding] = field(default_factory=list)

    def add(self, kind: str, action: str, file: str, detail: str) -> None:
        self.items.append(Finding(kind, action, str(file), detail))

    def merge(self, other: DataReport) -> None:
        self.items.extend(other.items)

    @property
    def counts(self) -> Counter:
        """``"kind (action)" -> n``."""
        return Counter(f.label for f in self.items)

    def summary(self, what: str = "data", path: str | None = None, examples: int = EXAMPLES) -> str | None:
        """``what: n kind (action), ...``, then a few examples and where the complete list is;
        None when nothing happened."""
        if not self.items:
            return None
        parts = ", ".join(f"{n} {label}" for label, n in sorted(self.counts.items()))
        lines = [f"{what}: {parts}"] + [f"  e.g. {f.message()}" for f in self.items[:examples]]
        if path:
            lines.append(f"  all {len(self.items)} named in {path}")
        elif len(self.items) > examples:
            lines.append(f"  ... and {len(self.items) - examples} more")
        return "\n".join(lines)

    def jsonl(self) -> str:
        return "".join(json.dumps(asdict(f)) + "\n" for f in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


@dataclass
class Skipped:
    """What a dataset gives for an item it could not read; the collate function drops it and its
    batch's report names it."""

    path: str
    detail: str

    @property
    def message(self) -> str:
        return f"{self.path}: {self.detail}"


class Collecting:
    """``loader``'s batches (anything with a ``report``), each one's findings added to ``report``
    as it passes; the caller publishes the report when the epoch or the run ends."""

    def __init__(self, loader, report: DataReport) -> None:
        self.loader, self.report = loader, report

    def __iter__(self):
        for batch in self.loader:
            self.report.merge(batch.report)
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


def report_path(out_dir: str, stage: str) -> str:
    """Where a run keeps a stage's list: ``<out_dir>/data_report/<stage>.jsonl`` (``read_train``,
    ``epoch_003``, ...)."""
    return os.path.join(out_dir, "data_report", f"{stage}.jsonl")


def read_report(path: str) -> DataReport:
    """A list written by :func:`publish` back into a report."""
    with open(path, encoding="utf-8") as f:
        return DataReport([Finding(**json.loads(line)) for line in f if line.strip()])


def gathered(report: DataReport, world: int) -> DataReport:
    """Every process's findings (in rank order) on every process; the report itself when alone."""
    if world == 1:
        return report
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, report.items)
    return DataReport([f for part in parts for f in part])


def publish(report: DataReport, what: str, path: str | None, log=None) -> str | None:
    """Write ``report`` to ``path`` (JSON lines, atomically; an old list there is removed when
    nothing was found, so the folder never names what a rerun fixed) and give ``log`` its summary.
    Returns the summary (None when nothing was found)."""
    if path:
        if report:
            write_text_atomic(path, report.jsonl())
        elif os.path.isfile(path):
            os.unlink(path)
    text = report.summary(what, path if report and path else None)
    if text and log is not None:
        log(text)
    return text


def publish_all(report: DataReport, what: str, path: str | None, world: int, rank: int, log) -> None:
    """:func:`publish` every process's findings from rank 0 (every process must call it)."""
    report = gathered(report, world)
    if rank == 0:
        publish(report, what, path, log)
