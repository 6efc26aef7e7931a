"""Pretraining's config (``PretrainConfig``: the run, ``data``, ``model``, ``optim``), and the one
place it becomes a model and an optimiser."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from core.config import Amp, ConfigError

from ..aux import GoogLeNetWithAux
from ..googlenet import googlenet
from .engine import Schedule


@dataclass
class DataConfig:
    # ILSVRC CLS-LOC: <root>/{train,val}/ or the 2015 tarballs' <root>/Data/CLS-LOC/{train,val}/ (layout.py)
    root: str = "data/imagenet"
    train_dir: str | None = None  # None: train/, else Data/CLS-LOC/train/
    val_dir: str | None = None  # None: val/, else Data/CLS-LOC/val/ (class folders, or flat with val_labels)
    val_labels: str | None = None  # a flat val's ground truth (None: found in the devkit, see devkit)
    synsets: str | None = None  # wnid/ID list for val_labels (None: the devkit's map_clsloc.txt, else the shipped one)
    devkit: str | None = None  # the devkit data/ (None: <root>/devkit/data, <root>, ILSVRC2012_devkit_t12/data)
    toy: bool = False  # generate the miniature ImageNet at root on first use
    toy_images_per_class: int = 80
    toy_image_size: int = 72
    crop: int = 224
    resize: int = 256  # evaluation: shorter side, then centre crop
    scales: list[int] = field(default_factory=lambda: [256, 288, 320, 352])  # 144-crop scales
    interpolations: list[Literal["linear", "area", "nearest", "cubic"]] = field(
        default_factory=lambda: ["linear", "area", "nearest", "cubic"])
    # howard: Howard (2013)'s brightness, contrast and colour factors in [0.5, 1.5], in random
    # order, and AlexNet's PCA lighting noise (the paper's citation); jitter: torchvision-style
    # ColorJitter of strength ``jitter``; none
    photometric: Literal["howard", "jitter", "none"] = "jitter"
    jitter: float = 0.4
    howard_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    lighting_std: float = 0.1  # AlexNet's PCA lighting: alpha ~ N(0, 0.1^2) per eigenvector
    area: list[float] = field(default_factory=lambda: [0.08, 1.0])  # crop area range (paper: 8-100%)
    workers: int = 4
    on_bad_image: Literal["skip", "error"] = "skip"
    # cpu: the loader workers decode and augment (OpenCV, albumentations); device: they read the
    # bytes and draw the augmentation, and the training batch is decoded (nvJPEG on a GPU) and
    # augmented where the model runs (backbone/pretrain/device.py, docs/gpu.md)
    decode: Literal["cpu", "device"] = "cpu"


@dataclass
class ModelConfig:
    variant: Literal["paper", "torchvision"] = "paper"
    norm: Literal["lrn", "bn"] | None = None  # default: lrn (paper), bn (torchvision)
    dropout: float | None = None  # main head; default 0.4 (paper) / 0.2 (torchvision)
    aux_dropout: float = 0.7
    aux_pool: Literal["paper", "adaptive"] | None = None
    fused: bool = False
    channels_last: bool = True


@dataclass
class OptimConfig:
    lr: float = 0.01  # per lr_reference_batch images (Caffe: 0.01 at batch 32); scaled to the global batch
    lr_reference_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 2e-4  # on weights; never on biases or norm parameters (BVLC: decay_mult 0)
    bias_lr_mult: float = 1.0  # biases' learning rate multiplier (BVLC's prototxt: lr_mult 2)
    schedule: Literal["step", "poly"] = "step"
    step_epochs: float = 8.0
    gamma: float = 0.96
    power: float = 0.5
    warmup_epochs: float = 0.0

    def scaled_lr(self, batch_size: int) -> float:
        """``lr`` scaled from ``lr_reference_batch`` images to a global batch of ``batch_size``."""
        return self.lr * batch_size / self.lr_reference_batch


@dataclass
class PretrainConfig:
    name: str = "googlenet_imagenet"
    work_dir: str = "work_dirs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # autocast: auto (bf16 on a GPU that has it, else fp16 with a gradient scaler; fp32 on the CPU),
    # bf16, fp16 (either device) or off; true/false read as auto/off
    amp: Amp | bool = "auto"
    epochs: int = 60
    batch_size: int = 256  # global, over all processes
    eval_every: int = 1  # epochs
    eval_crops: Literal[1, 10, 144] = 1
    model_index: int = 0  # ensemble member k: its own seed, data order and work dir (name_mK for k > 0)
    # the weights scored beside the raw ones and exported: ema (exponential moving average),
    # polyak (the uniform average of every step's weights over the last polyak_epochs) or none
    averaging: Literal["ema", "polyak", "none"] = "ema"
    ema_decay: float = 0.9999
    polyak_epochs: float = 8.0
    bn_batches: int = 100  # polyak with BatchNorm: training batches its statistics are recomputed on
    export: Literal["averaged", "raw"] = "averaged"
    resume: str = "auto"  # auto (latest good checkpoint in the work dir) | none | a checkpoint path
    checkpoint_every_steps: int = 0  # also checkpoint inside epochs every N steps; 0 = epoch ends only
    keep_checkpoints: int = 2
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs, tests)
    progress: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    @property
    def run_name(self) -> str:
        return self.name if self.model_index == 0 else f"{self.name}_m{self.model_index}"

    @property
    def run_seed(self) -> int:
        """Member k's seed: its initial weights, data order, augmentation and dropout differ."""
        return self.seed + 1000 * self.model_index

    @property
    def out_dir(self) -> str:
        return os.path.join(self.work_dir, self.run_name)


def build_model(cfg: PretrainConfig, num_classes: int) -> GoogLeNetWithAux:
    m = cfg.model
    paper_pool = m.aux_pool == "paper" or (m.aux_pool is None and m.variant == "paper")
    if paper_pool and cfg.data.crop != 224:
        raise ConfigError(f"model.aux_pool=paper (the paper's 5x5/3 pooling) needs data.crop=224, not "
                          f"{cfg.data.crop}: set model.aux_pool=adaptive")
    return googlenet(num_classes, variant=m.variant, norm=m.norm, fused=m.fused, dropout=m.dropout,
                     channels_last=m.channels_last, aux=True, aux_pool=m.aux_pool, aux_dropout=m.aux_dropout)


def build_optimizer(model: nn.Module, o: OptimConfig, lr: float) -> torch.optim.SGD:
    """SGD with three parameter groups, as Caffe's BVLC prototxt sets them per layer: weights
    (decay), biases (``bias_lr_mult`` x the learning rate, no decay) and normalisation parameters
    (no decay). ``core.trainer.set_lr`` applies each group's ``lr_mult``."""
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)
                   for p in m.parameters(recurse=False)}
    weights, biases, norms = [], [], []
    for name, p in model.named_parameters():
        if id(p) in norm_params:
            norms.append(p)
        elif name.endswith("bias"):
            biases.append(p)
        else:
            weights.append(p)
    groups = [{"params": weights, "weight_decay": o.weight_decay, "lr_mult": 1.0},
              {"params": biases, "weight_decay": 0.0, "lr_mult": o.bias_lr_mult},
              {"params": norms, "weight_decay": 0.0, "lr_mult": 1.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=o.momentum)


def build_schedule(cfg: PretrainConfig, base_lr: float, steps_per_epoch: int) -> Schedule:
    o = cfg.optim
    return Schedule(base_lr, cfg.epochs, steps_per_epoch, o.schedule, o.step_epochs, o.gamma, o.power, o.warmup_epochs)
