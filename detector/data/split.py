"""R-CNN's val1/val2: the DET validation set split in two halves balanced by class (spec §4)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from core.atomic import write_text_atomic

from .sample import ImageRecord


def balanced_halves(records: list[ImageRecord], seed: int = 0) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Visit the images in a seeded order, rarest classes first, and put each in the half that so
    far holds fewer objects of its classes (fewer images on a tie): both halves end with nearly
    the same count of every class. Deterministic for a seed."""
    freq = Counter(int(c) for r in records for c in r.labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records)).tolist()
    # images of rare classes first, so that they are the ones spread evenly
    order.sort(key=lambda i: min((freq[int(c)] for c in records[i].labels), default=1 << 30))
    halves: tuple[list[ImageRecord], list[ImageRecord]] = ([], [])
    counts = (Counter(), Counter())
    for i in order:
        r = records[i]
        labels = Counter(int(c) for c in r.labels)
        lean = sum((counts[0][c] - counts[1][c]) * n for c, n in labels.items())
        side = 1 if lean > 0 else 0 if lean < 0 else int(len(halves[0]) > len(halves[1]))
        halves[side].append(r)
        counts[side].update(labels)
    return (sorted(halves[0], key=lambda r: r.index), sorted(halves[1], key=lambda r: r.index))


def write_split(path: str, records: list[ImageRecord]) -> None:
    """``<image_id> <index>`` lines, the val.txt format, keeping the original indices (the
    blacklist and the submission format refer to them); written atomically."""
    write_text_atomic(path, "".join(f"{r.image_id} {r.index}\n" for r in records))
