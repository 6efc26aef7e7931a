"""A parsed split's index kept on disk, so that scoring the ILSVRC val split a second time parses no
XML (20k files: about 3 s to parse, 0.1-0.2 s to read back).

The file is keyed by what the index is read with (root, split, synsets, blacklist, negatives,
seed) and holds a signature of every file it was read from (the image lists, the synsets and
blacklist files, and each image's annotation: path, size and modification time). Any change to
any of them, a file fixed, added or deleted, and the split is parsed again. The records are stored
as plain arrays (``.npz`` without pickles), with the parse report, so a cached read reports what
the first one did.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from core.atomic import write_atomic
from core.data_report import DataReport, Finding

from .sample import ImageRecord

VERSION = 1


def default_cache_dir() -> str:
    """``$GOOGLENET_DET_CACHE``, else ``$XDG_CACHE_HOME/googlenet-det/index`` (``~/.cache/...``)."""
    if os.environ.get("GOOGLENET_DET_CACHE"):
        return os.environ["GOOGLENET_DET_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "googlenet-det", "index")


def cache_path(folder: str, *key: object) -> str:
    """The cache file of an index read with ``key`` (its arguments, paths made absolute)."""
    text = "\0".join(os.path.abspath(k) if isinstance(k, str) and os.path.exists(k) else repr(k) for k in key)
    return os.path.join(folder, hashlib.sha1(f"{VERSION}\0{text}".encode()).hexdigest()[:20] + ".npz")


def signature(files: list[str], or_else: list[tuple[str, str]] = ()) -> str:
    """One digest of the path, size and modification time of each of ``files`` and, for each pair
    of ``or_else``, of its first file, or its second where the first is missing (an annotation,
    else the image whose header gives the size). A missing file counts too."""
    h = hashlib.sha1()

    def add(p: str) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            h.update(f"{p}\0-\n".encode())
            return False
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return True

    for p in files:
        add(p)
    for first, second in or_else:
        if not add(first):
            add(second)
    return h.hexdigest()


def save_index(path: str, sig: str, records: list[ImageRecord], report: DataReport) -> None:
    """Write ``records`` and ``report`` under ``sig``; a cache that cannot be written is skipped."""
    n_obj = [len(r.labels) for r in records]
    n_black = [len(r.ignore_classes) for r in records]
    cat = lambda arrs, shape, dtype: (np.concatenate(arrs).astype(dtype) if arrs else np.zeros(shape, dtype))  # noqa: E731
    arrays = {
        "signature": np.array(sig), "path": np.array([r.path for r in records], str),
        "image_id": np.array([str(r.image_id) for r in records], str),
        "id_is_int": np.array([isinstance(r.image_id, int) for r in records], bool),
        "size": np.array([(r.width, r.height, r.index) for r in records], np.int64).reshape(-1, 3),
        "source": np.array([r.source for r in records], str), "n_obj": np.array(n_obj, np.int64),
        "boxes": cat([r.boxes.reshape(-1, 4) for r in records], (0, 4), np.float32),
        "labels": cat([r.labels for r in records], (0,), np.int64),
        "ignore": cat([r.ignore for r in records], (0,), bool),
        "n_black": np.array(n_black, np.int64), "black": np.array([c for r in records for c in r.ignore_classes],
                                                                  np.int64),
        "report": np.array([[f.kind, f.action, f.file, f.detail] for f in report.items], str).reshape(-1, 4),
    }
    try:
        write_atomic(path, "wb", lambda f: np.savez(f, **arrays))
    except OSError:
        pass  # a read-only or full cache folder: the index is parsed each time, as without one


def load_index(path: str, sig: str) -> tuple[list[ImageRecord], DataReport] | None:
    """The records and report saved under ``sig``, or None (no file, another signature, unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["signature"]) != sig:
                return None
            z = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError):
        return None
    obj = np.r_[0, np.cumsum(z["n_obj"])]
    blk = np.r_[0, np.cumsum(z["n_black"])]
    records = []
    for i, (w, h, index) in enumerate(z["size"].tolist()):
        a, b = obj[i], obj[i + 1]
        image_id = str(z["image_id"][i])
        records.append(ImageRecord(str(z["path"][i]), int(image_id) if z["id_is_int"][i] else image_id, w, h,
                                   z["boxes"][a:b], z["labels"][a:b], z["ignore"][a:b], source=str(z["source"][i]),
                                   index=index, ignore_classes=tuple(z["black"][blk[i]:blk[i + 1]].tolist())))
    report = DataReport([Finding(*row) for row in z["report"].tolist()])
    return records, report
