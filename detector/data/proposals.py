"""The proposals file: every image's region proposals for one split, in one ``.npz``.

Arrays (R-CNN's precomputed-proposals practice, one file a split; docs/proposals.md):

* ``image_ids [N]`` str: the image id the readers give (ILSVRC's path under ``Data/DET/<split>``
  without ``.JPEG``, COCO's id as text, VOC's file stem);
* ``sizes [N, 2]`` int32: (height, width) of the image the boxes were made on (its stored pixels);
* ``counts [N]`` int64: boxes per image; image ``i``'s are rows ``offsets[i] .. offsets[i] + counts[i]``;
* ``boxes [B, 4]`` float32: xyxy in the original image's pixels, best first (Selective Search:
  its own hierarchical ranking; RPN: objectness);
* ``scores [B]`` float32: present where the method has them (RPN objectness);
* ``meta``: JSON text (method, its settings, split, data root, format version).

Written uncompressed and byte-for-byte reproducibly (fixed zip timestamps), so that a resumed run
gives the identical file, and read with the boxes memory-mapped: the ILSVRC train split at 2,000
boxes an image is 15 GB of float32, which DataLoader workers then share through the page cache.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from core.atomic import write_atomic
from core.errors import DataError

from ..box_ops import clip_xyxy

FORMAT = "googlenet-det proposals"
VERSION = 1


class ProposalError(DataError):
    """A proposals file that cannot be used with this data; the message names the file and the fix."""


@dataclass
class Proposals:
    """One split's proposals (see the module's docstring for the arrays)."""

    image_ids: np.ndarray  # [N] str
    sizes: np.ndarray  # [N, 2] int32 (height, width)
    counts: np.ndarray  # [N] int64
    boxes: np.ndarray  # [B, 4] float32 xyxy, possibly memory-mapped
    scores: np.ndarray | None  # [B] float32
    meta: dict

    def __post_init__(self) -> None:
        self.offsets = np.cumsum(self.counts) - self.counts  # [N]

    def of(self, i: int) -> np.ndarray:
        """Image ``i``'s boxes, ``[P, 4]`` float32 (a copy: the file's array may be memory-mapped)."""
        start = int(self.offsets[i])
        return np.array(self.boxes[start:start + int(self.counts[i])], np.float32)

    @staticmethod
    def join(parts: list[Proposals], meta: dict) -> Proposals:
        """Parts in order, as one set (chunks of a run, shards of a split)."""
        has_scores = all(p.scores is not None for p in parts) and bool(parts)
        return Proposals(np.concatenate([p.image_ids for p in parts]) if parts else np.zeros(0, "U1"),
                         np.concatenate([p.sizes for p in parts]).astype(np.int32).reshape(-1, 2),
                         np.concatenate([p.counts for p in parts]).astype(np.int64),
                         np.concatenate([np.asarray(p.boxes) for p in parts]).astype(np.float32).reshape(-1, 4),
                         np.concatenate([p.scores for p in parts]).astype(np.float32) if has_scores else None,
                         meta)


def _arrays(p: Proposals) -> dict[str, np.ndarray]:
    out = {"image_ids": np.asarray(p.image_ids, str), "sizes": np.asarray(p.sizes, np.int32).reshape(-1, 2),
           "counts": np.asarray(p.counts, np.int64), "boxes": np.asarray(p.boxes, np.float32).reshape(-1, 4),
           "meta": np.array(json.dumps({"format": FORMAT, "version": VERSION, **p.meta}, sort_keys=True))}
    if p.scores is not None:
        out["scores"] = np.asarray(p.scores, np.float32)
    return out


def save_proposals(path: str, p: Proposals) -> None:
    """``p`` to ``path`` atomically; the same proposals always give the same bytes."""
    def write(f) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
            for name, arr in _arrays(p).items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr, allow_pickle=False)
                z.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    write_atomic(path, "wb", write)


def _mapped(path: str, z: zipfile.ZipFile, name: str) -> np.ndarray:
    """An uncompressed member of the zip as a read-only memory map (no copy into memory)."""
    info = z.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the local file header: 30 bytes, then the name and the extra field
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if fortran or info.compress_type != zipfile.ZIP_STORED or not shape[0]:
        return np.load(io.BytesIO(z.read(name)), allow_pickle=False)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def load_proposals(path: str) -> Proposals:
    """A proposals file, checked: one :class:`ProposalError` naming the file for anything that
    is not one, or for NaN, infinite or inverted boxes."""
    if not os.path.isfile(path):
        raise ProposalError(f"{path}: no such proposals file; make it with: python tools/make_proposals.py CONFIG "
                            "--method ss --split SPLIT --out FILE")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            need = {"image_ids.npy", "sizes.npy", "counts.npy", "boxes.npy", "meta.npy"}
            if not need <= names:
                raise ProposalError(f"{path}: not a proposals file of tools/make_proposals.py "
                                    f"(missing {', '.join(sorted(n[:-4] for n in need - names))})")
            small = {n[:-4]: np.load(io.BytesIO(z.read(n)), allow_pickle=False) for n in need - {"boxes.npy"}}
            boxes = _mapped(path, z, "boxes.npy")
            scores = np.load(io.BytesIO(z.read("scores.npy")), allow_pickle=False) if "scores.npy" in names else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ProposalError(f"{path}: unreadable proposals file ({type(e).__name__}: {e}); make it again with "
                            "tools/make_proposals.py") from None
    meta = json.loads(str(small["meta"]))
    p = Proposals(small["image_ids"], small["sizes"], small["counts"], boxes, scores, meta)
    check_proposals(path, p)
    return p


def check_proposals(path: str, p: Proposals) -> None:
    """Consistent arrays, finite boxes with x1 <= x2 and y1 <= y2; else :class:`ProposalError`."""
    n = len(p.image_ids)
    if p.meta.get("format") != FORMAT:
        raise ProposalError(f"{path}: not a proposals file of tools/make_proposals.py (meta says {p.meta!r:.80})")
    if p.sizes.shape != (n, 2) or p.counts.shape != (n,) or int(p.counts.sum()) != len(p.boxes) or \
            p.boxes.ndim != 2 or p.boxes.shape[1] != 4 or (p.scores is not None and len(p.scores) != len(p.boxes)):
        raise ProposalError(f"{path}: inconsistent arrays ({n} images, {int(p.counts.sum())} boxes counted, "
                            f"boxes {tuple(p.boxes.shape)}); make it again with tools/make_proposals.py")
    if len(set(p.image_ids.tolist())) != n:
        raise ProposalError(f"{path}: an image id appears more than once")
    bad = _bad_rows(p.boxes)
    if len(bad):
        img = int(np.searchsorted(np.cumsum(p.counts), bad[0], side="right"))
        raise ProposalError(f"{path}: {len(bad)} boxes are NaN, infinite or inverted (x2 < x1 or y2 < y1), the "
                            f"first of image {p.image_ids[img]}: {np.asarray(p.boxes[bad[0]]).tolist()}; "
                            "proposals are xyxy in the original image's pixels")


def _bad_rows(boxes: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """Rows of [B, 4] that are not finite or are inverted, read in chunks (the array may be mapped)."""
    bad = []
    for start in range(0, len(boxes), chunk):
        b = np.asarray(boxes[start:start + chunk])
        wrong = ~np.isfinite(b).all(1) | (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        bad.append(np.flatnonzero(wrong) + start)
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


@dataclass
class RecordProposals:
    """A data set's proposals in record order: ``[i]`` is record ``i``'s best ``top_n`` boxes,
    clipped to the image, those under a pixel wide or high left out (``[P, 4]`` float32 xyxy)."""

    sources: list[Proposals]
    where: list[tuple[int, int]]  # per record: (source, row in it)
    top_n: int

    def __len__(self) -> int:
        return len(self.where)

    def __getitem__(self, i: int) -> np.ndarray:
        s, row = self.where[i]
        p = self.sources[s]
        h, w = (int(v) for v in p.sizes[row])
        b = clip_xyxy(p.of(row)[: self.top_n], h, w)
        return b[((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)]


def aligned(path: str, p: Proposals, records: list, split: str) -> list[int]:
    """For each record, the row of its image in ``p``; a file made for another split, missing
    images, or boxes made on images of another size are one :class:`ProposalError` naming the file."""
    made_for = p.meta.get("split")
    if made_for is not None and made_for != split:
        raise ProposalError(f"{path}: made for split {made_for!r}, used for {split!r}; make one for {split!r} with "
                            f"tools/make_proposals.py CONFIG --split {split}")
    row = {str(i): k for k, i in enumerate(p.image_ids.tolist())}
    missing = [r.image_id for r in records if str(r.image_id) not in row]
    if missing:
        raise ProposalError(f"{path}: no proposals for {len(missing)} of the {len(records)} images of split {split!r} "
                            f"(first: {missing[0]}); make the file again for this split")
    rows = [row[str(r.image_id)] for r in records]
    for r, k in zip(records, rows):
        h, w = (int(v) for v in p.sizes[k])
        if (h, w) != (r.height, r.width):
            raise ProposalError(f"{path}: proposals of {r.image_id} were made on a {w}x{h} image, the image is "
                                f"{r.width}x{r.height} (made at another scale?); proposals are in the original "
                                "image's pixels: make the file again from the original images")
    return rows
