"""What a run leaves to read: messages on stderr (rank 0 only), a JSON-lines log, TensorBoard
scalars, and curves drawn from the log."""

from __future__ import annotations

import json
import os
import sys
import time

from .atomic import save_figure_atomic


def log(msg: str, rank: int = 0) -> None:
    """``msg`` on stderr, from rank 0 only (the other processes would repeat it)."""
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


class Records:
    """Rank 0's ``log.jsonl`` (one JSON object a line: ``kind``, ``time`` and the record) and its
    TensorBoard scalars under ``tb/``; on other ranks (``enabled=False``) nothing is written."""

    def __init__(self, out_dir: str, enabled: bool) -> None:
        self.enabled = enabled
        self.path = os.path.join(out_dir, "log.jsonl")
        self.tb = None
        if enabled:
            os.makedirs(out_dir, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(out_dir, "tb"))
            except ImportError:  # TensorBoard is a dependency; run without it rather than fail
                self.tb = None

    def write(self, kind: str, record: dict, step: int) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "time": time.time(), **record}) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step", "global_step"):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_records(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(log_path: str, png_path: str, loss_label: str, eval_keys: dict[str, str],
                eval_label: str) -> None:
    """Two panels from a ``log.jsonl``: the training loss by step, and each of ``eval_keys``
    (record key -> legend label) of the evaluation records by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_records(log_path)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([r["global_step"] for r in train], [r["loss"] for r in train])
    a.set(xlabel="step", ylabel=loss_label, title="training loss")
    for key, label in eval_keys.items():
        pts = [(r["epoch"], r[key]) for r in evals if r.get(key) is not None]
        if pts:
            b.plot(*zip(*pts), marker="o", label=label)
    b.set(xlabel="epoch", ylabel=eval_label, title="validation")
    b.legend()
    fig.tight_layout()
    save_figure_atomic(fig, png_path)
    plt.close(fig)
