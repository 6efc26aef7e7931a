"""Making a split's proposals file (``tools/make_proposals.py``): the images in fixed chunks, each
chunk written atomically into ``<out>.parts/`` as it is done, so that

* a killed run, run again, does only the chunks that are missing and ends with the same file;
* ``--workers N`` runs chunks in N processes (Selective Search is single-threaded C++), and
  ``--engine ray`` on the actors of a Ray cluster (:mod:`core.engines`); either way this process
  writes each chunk as it comes back, and the file is the same;
* ``--shard K/N`` does every N-th chunk from the K-th, on as many machines: copy their
  ``<out>.parts/`` folders into one and run once more without ``--shard`` to join them.

Every image of the split is in the file (ILSVRC training negatives included, whatever share a
member samples); one that cannot be read gets no boxes, and is named in the data report.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from core.atomic import write_json_atomic
from core.data_report import DataReport, publish, report_path
from core.engines import Engine, run_shards
from core.errors import BadImageError, DataError, ShardsFailed
from core.parts import check_settings, differing
from core.progress import progress_bar
from core.records import log

from ..config import DetConfig
from ..data.build import build_detection_data
from ..data.dataset import UNREADABLE
from ..data.proposals import ProposalError, Proposals, load_proposals, save_proposals
from .recall import format_table, recall_table

# images per chunk: the unit of resuming, of sharding and of work handed to a process (small
# enough that a few dozen images keep two workers busy; ILSVRC's train split is 29k chunks)
CHUNK = 16


@dataclass
class Job:
    """What to make: the method's boxes for ``split``, into ``out``; ``settings`` identify the
    method's setup in the file. ``recipe()`` builds, in each worker, the function of one record:
    ``(boxes [P, 4] float32 xyxy, scores [P] or None)``, raising BadImageError (methods.py)."""

    split: str
    out: str
    settings: dict
    recipe: Callable[[], Callable]  # frozen and picklable: SelectiveSearchRecipe, RPNRecipe
    scores: bool = False  # the method gives scores
    top_n: int = 2000
    chunk: int = CHUNK
    engine: Engine = field(default_factory=Engine)
    shard: tuple[int, int] = (0, 1)
    merge_only: bool = False
    progress: bool = True


def split_records(cfg: DetConfig, split: str) -> list:
    """Every image of ``split`` as the readers index it (ILSVRC: all negatives too)."""
    data = replace(cfg.data, val_split=split, negatives=1.0)
    _, index = build_detection_data(data, train=False, seed=cfg.seed)
    if not index.records:
        raise DataError(f"{cfg.data.root}: split {split} has no images")
    return index.records


@dataclass(frozen=True)
class ChunkMaker:
    """Builds, in a worker, the function from a chunk's records to their :class:`Proposals`."""

    recipe: Callable[[], Callable]
    top_n: int
    scores: bool

    def __call__(self) -> Callable[[list], Proposals]:
        return partial(_chunk, self.recipe(), self.top_n, self.scores)


def _chunk(boxes_of: Callable, top_n: int, with_scores: bool, part: list) -> Proposals:
    """A chunk's proposals; unreadable images get none (listed in the chunk's meta)."""
    boxes, scores, skipped = [], [], []
    for rec in part:
        try:
            b, s = boxes_of(rec)
        except BadImageError as e:
            b, s = np.zeros((0, 4), np.float32), np.zeros(0, np.float32) if with_scores else None
            skipped.append([e.path, e.detail])
        boxes.append(np.asarray(b, np.float32).reshape(-1, 4)[:top_n])
        scores.append(None if s is None else np.asarray(s, np.float32)[:top_n])
    return Proposals(np.array([str(r.image_id) for r in part]), np.array([[r.height, r.width] for r in part]),
                     np.array([len(b) for b in boxes], np.int64), np.concatenate(boxes),
                     np.concatenate(scores) if with_scores else None, {"skipped": skipped})


def _chunks(job: Job, records: list) -> int:
    return -(-len(records) // job.chunk)


def _part(job: Job, records: list, i: int) -> list:
    return records[i * job.chunk:(i + 1) * job.chunk]


def _chunk_path(parts: str, i: int) -> str:
    return os.path.join(parts, f"chunk_{i:06d}.npz")


def _readable(path: str) -> Proposals | None:
    """The proposals file at ``path``, or None where there is none or it cannot be used (made again)."""
    if not os.path.isfile(path):
        return None
    try:
        return load_proposals(path)
    except ProposalError:
        return None


def _done(job: Job, records: list, parts: str, i: int) -> bool:
    """Chunk ``i`` is on disk, readable, and of these images."""
    p = _readable(_chunk_path(parts, i))
    return p is not None and p.image_ids.tolist() == [str(r.image_id) for r in _part(job, records, i)]


def compute(job: Job, records: list, parts: str) -> None:
    """Every chunk of this shard that is not done yet, on ``job.engine``."""
    k, n = job.shard
    mine = [i for i in range(_chunks(job, records)) if i % n == k]
    todo = [i for i in mine if not _done(job, records, parts, i)]
    if job.merge_only and todo:
        raise ProposalError(f"{parts}: {len(todo)} of {len(mine)} chunks missing (first: "
                            f"{_chunk_path(parts, todo[0])}); copy every shard's .parts folder here, or run without "
                            "--merge to make them")
    total = sum(len(_part(job, records, i)) for i in mine)
    left = sum(len(_part(job, records, i)) for i in todo)
    failures = run_shards(ChunkMaker(job.recipe, job.top_n, job.scores), [(i, _part(job, records, i)) for i in todo],
                          job.engine, lambda i, chunk: save_proposals(_chunk_path(parts, i), chunk),
                          lambda: progress_bar(total=total, initial=total - left, desc=f"proposals {job.split}",
                                               enabled=job.progress, unit="img"))
    if failures:
        for f in failures:  # the shards' images by path, as the data report names them
            f.items = [r.path for r in f.items]
        raise ShardsFailed(f"proposals for {job.split}", failures, len(mine))


def make(cfg: DetConfig, job: Job) -> list[dict] | None:
    """Make (or finish, or join) ``job.out``; print and return its recall table (None for a shard
    of several, which leaves its chunks for the join)."""
    records = split_records(cfg, job.split)
    settings = {**job.settings, "split": job.split, "top_n": job.top_n, "chunk": job.chunk, "images": len(records),
                "data_root": os.path.abspath(cfg.data.root)}
    if not _complete(job.out, settings, records):
        parts = job.out + ".parts"
        os.makedirs(parts, exist_ok=True)
        check_settings(parts, settings, ProposalError)
        compute(job, records, parts)
        if job.shard[1] > 1:
            log(f"shard {job.shard[0]}/{job.shard[1]} done in {parts}; when every shard is, copy their .parts "
                "folders into one and run again without --shard to join them")
            return None
        chunks = [load_proposals(_chunk_path(parts, i)) for i in range(_chunks(job, records))]
        report = DataReport()
        for c in chunks:
            for path, detail in c.meta.get("skipped", []):
                report.add(UNREADABLE, "image skipped (no proposals)", path, detail)
        save_proposals(job.out, Proposals.join(chunks, settings))
        publish(report, f"making proposals for {job.split}",
                report_path(os.path.dirname(os.path.abspath(job.out)), f"proposals_{job.split}"), log)
        shutil.rmtree(parts)
    return summarise(job.out, records)


def _complete(out: str, settings: dict, records: list) -> bool:
    """``out`` is there, made with these settings, for these images; one made with other
    settings is an error."""
    p = _readable(out)
    if p is None:
        return False
    meta = {k: v for k, v in p.meta.items() if k not in ("format", "version")}
    if meta != settings:  # another run's file: never overwritten unasked
        raise ProposalError(f"{out}: made with other settings ({', '.join(differing(meta, settings))} differ); "
                            "delete it or give another --out")
    return p.image_ids.tolist() == [str(r.image_id) for r in records]


def summarise(out: str, records: list) -> list[dict]:
    """The recall table of ``out`` against the split's objects: printed, and written beside it."""
    p = load_proposals(out)
    rows = recall_table(records, [p.of(i) for i in range(len(records))])
    write_json_atomic(os.path.splitext(out)[0] + ".recall.json", {"file": out, "meta": p.meta, "rows": rows})
    print(format_table(rows, f"proposal recall: {out} ({len(records)} images)"))
    return rows

