"""Randomness without hidden state: every draw that matters is seeded from numbers a resumed or
distributed run can recompute (the seed, the epoch, the step, the sample, the rank), so that it
draws exactly what an uninterrupted single-process run draws."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's global generators (the initial weights)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, global_step: int, rank: int) -> int:
    """The torch RNG (dropout, the detector's sampling) is re-seeded from this every step."""
    return (seed * 1_000_003 + global_step * 7919 + rank) % (2**63 - 1)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """One sample's augmentation seed: the same whatever the process, worker or resume point."""
    return hash((seed, epoch, index)) & 0x7FFFFFFF


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's data order."""
    return seed * 1_000_003 + epoch
