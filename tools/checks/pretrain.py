"""Pretraining as ``tools/pretrain_backbone.py`` runs it (the paper config's network with its
auxiliary heads, SGD through the AMP gradient scaler): steps on the device against the CPU in
fp32, and a two-process DDP step against one process."""

from __future__ import annotations

import math
import os
import socket
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from backbone.pretrain.config import PretrainConfig, build_model, build_optimizer, build_schedule
from backbone.pretrain.data import Batch
from backbone.pretrain.engine import train_one_epoch
from core.config import load_config
from core.runtime import amp_for, amp_name

from .common import LOSS_RTOL, Meter, Row, compare, guarded, on, relative

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                      "pretrain_imagenet.yaml")
NUM_CLASSES = 100


def config(crop: int) -> PretrainConfig:
    """The paper config without dropout (the CPU and the GPU draw different masks, so the losses
    could not be compared) and, below 224 px, the adaptive auxiliary pooling the paper's 5x5/3 needs."""
    extra = [] if crop == 224 else ["model.aux_pool=adaptive"]
    return load_config(PretrainConfig, CONFIG, [f"data.crop={crop}", "model.dropout=0.0", "model.aux_dropout=0.0",
                                                *extra])


def batch(n: int, crop: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 3, crop, crop, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g))


def steps(cfg: PretrainConfig, model: nn.Module, device: torch.device, amp: str, data: Batch, n: int,
          meter: Meter | None = None, world: int = 1) -> tuple[list[float], nn.Module]:
    """``n`` optimiser steps on ``data`` (this process's share of ``world``) through pretraining's
    ``train_one_epoch``: the loss of each."""
    autocast, scaler = amp_for(device, amp)
    lr = cfg.optim.scaled_lr(len(data.labels) * world)  # scaled to the global batch, as run.py does
    optimizer = build_optimizer(model, cfg.optim, lr)
    losses: list[float] = []

    def on_step(step: int, stats: dict) -> None:
        losses.append(stats["loss"])
        if step == 1 and meter is not None:  # the first step (cuDNN's autotuning, allocations) is not timed
            meter.start()
    train_one_epoch(model, [data] * n, optimizer, build_schedule(cfg, lr, n),
                    epoch=0, start_step=0, device=device, seed=cfg.seed, scaler=scaler, autocast=autocast,
                    channels_last=cfg.model.channels_last, progress=False,
                    on_step=on_step)
    return losses, model


def _steps_row(row: Row, cfg: PretrainConfig, model: nn.Module, device: torch.device, mode: str, data: Batch,
               n: int, reference: float) -> None:
    meter = Meter(device)
    losses, trained = steps(cfg, on(model, device), device, mode, data, n, meter)
    row.images_per_s, row.peak_mib = meter.stop(len(data.labels) * (n - 1))
    compare(row, "loss rel. diff", relative(losses[0], reference), LOSS_RTOL[row.dtype])
    if not all(math.isfinite(v) for v in losses) or not all(torch.isfinite(p).all() for p in trained.parameters()):
        row.ok, row.detail = False, f"non-finite loss or weights: {losses}"


def pretrain_rows(device: torch.device, modes: list[str], size: dict) -> list[Row]:
    cfg = config(size["crop"])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES)
    data = batch(size["cls_batch"], size["crop"])
    cpu = torch.device("cpu")
    reference = steps(cfg, on(model, cpu), cpu, "off", data, 1)[0][0]
    return [guarded(Row("pretrain step, aux heads", amp_name(device, mode)), _steps_row, cfg, model, device, mode,
                    data, size["steps"], reference) for mode in modes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, crop: int, n: int, use_cuda: bool, out: str) -> None:
    device = torch.device("cuda", rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        cfg = config(crop)
        torch.manual_seed(0)
        model = build_model(cfg, NUM_CLASSES).to(device)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[rank] if use_cuda else None)
        full = batch(n, crop)
        share = n // world
        mine = Batch(full.images[rank * share:(rank + 1) * share], full.labels[rank * share:(rank + 1) * share])
        steps(cfg, net, device, "off", mine, 1, world=world)
        if rank == 0:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out)
    finally:
        dist.destroy_process_group()


def _ddp(row: Row, device: torch.device, crop: int) -> None:
    use_cuda, n = device.type == "cuda", 4
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.pth")
        mp.start_processes(_ddp_worker, args=(2, _free_port(), crop, n, use_cuda, out), nprocs=2, start_method="spawn")
        ddp = torch.load(out, weights_only=True)
    cfg = config(crop)
    torch.manual_seed(0)
    one = torch.device("cuda", 0) if use_cuda else device
    _, single = steps(cfg, build_model(cfg, NUM_CLASSES).to(one), one, "off", batch(n, crop), 1)
    diff = max(float((v.cpu().float() - ddp[k].float()).abs().max()) for k, v in single.state_dict().items()
               if v.is_floating_point())
    compare(row, "max weight diff", diff, 1e-4)


def ddp_row(device: torch.device, size: dict) -> Row:
    """Two processes, half the batch each (NCCL on two GPUs, gloo on the CPU), against one process
    with the whole batch: after one step the weights must agree (the paper variant has no
    BatchNorm, so the two are the same sum)."""
    row = Row("DDP step, 2 processes vs 1", "fp32")
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        row.detail = f"skipped: {torch.cuda.device_count()} GPU (needs 2)"
        return row
    return guarded(row, _ddp, device, size["crop"])
