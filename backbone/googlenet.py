"""GoogLeNet (Inception v1), Szegedy et al. 2014, "Going Deeper with Convolutions" (arXiv 1409.4842).

Two layouts share one class (spec ../shared/docs/googlenet.md §1):

* ``variant="paper"``: the Caffe BVLC model. Conv biases, LRN after pool1 and after the 3x3 stem
  conv, a true 5x5 branch, every max pool 3x3/2 with ceil mode, dropout 0.4. ``norm="bn"`` keeps
  the layout and puts BatchNorm after every conv instead (no conv bias, no LRN).
* ``variant="torchvision"``: torchvision's ``googlenet`` (BN eps 1e-3, the "5x5" branch is a 3x3
  (pytorch/vision#906), pool4 2x2/2, dropout 0.2), with the same state-dict keys so that
  ``googlenet-1378be20.pth`` loads from a local path (:func:`load_weights`).

Contract: ``forward(x)`` always returns logits ``[N, num_classes]``; ``forward_features(x, taps)``
always returns an ``OrderedDict`` of the requested taps; ``feature_info`` declares channels and
stride per tap. The auxiliary heads are not part of this network: they live in
:class:`backbone.aux.GoogLeNetWithAux`, the pretraining wrapper, which returns
``(logits, aux1, aux2)`` in train and eval mode alike. :func:`googlenet` builds either.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .aux import GoogLeNetWithAux
from .init import Norm, Variant, init_weights
from .layers import BasicConv2d, Inception, LocalResponseNorm
from .weights import load_weights, read_weights

# torchvision's ImageNet normalisation; what every layout here expects unless ``transform_input``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per Inception module.
INCEPTION_CFG: OrderedDict[str, tuple[int, int, int, int, int, int]] = OrderedDict(
    [
        ("3a", (64, 96, 128, 16, 32, 32)),
        ("3b", (128, 128, 192, 32, 96, 64)),
        ("4a", (192, 96, 208, 16, 48, 64)),
        ("4b", (160, 112, 224, 24, 64, 64)),
        ("4c", (128, 128, 256, 24, 64, 64)),
        ("4d", (112, 144, 288, 32, 64, 64)),
        ("4e", (256, 160, 320, 32, 128, 128)),
        ("5a", (256, 160, 320, 32, 128, 128)),
        ("5b", (384, 192, 384, 48, 128, 128)),
    ]
)
_STRIDE = {"3": 8, "4": 16, "5": 32}


@dataclass(frozen=True)
class FeatureInfo:
    """One tap a detector may read: its name, channel count and stride relative to the input."""

    name: str
    channels: int
    stride: int


def _out_channels(cfg: tuple[int, int, int, int, int, int]) -> int:
    c1, _, c3, _, c5, cp = cfg
    return c1 + c3 + c5 + cp


FEATURE_INFO: tuple[FeatureInfo, ...] = tuple(
    FeatureInfo(name, _out_channels(cfg), _STRIDE[name[0]]) for name, cfg in INCEPTION_CFG.items()
)


class GoogLeNet(nn.Module):
    """The classification network without auxiliary heads. Build it with :func:`googlenet`."""

    # Execution order of the trunk; the Inception modules are also the taps.
    _LAYERS = ("conv1", "maxpool1", "lrn1", "conv2", "conv3", "lrn2", "maxpool2",
               "inception3a", "inception3b", "maxpool3",
               "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
               "inception5a", "inception5b")

    def __init__(self, num_classes: int = 1000, variant: Variant = "paper", norm: Norm = "lrn",
                 transform_input: bool = False, dropout: float | None = None, fused: bool = False,
                 channels_last: bool = True, init: bool = True) -> None:
        super().__init__()
        if variant not in ("paper", "torchvision"):
            raise ValueError(f"variant must be 'paper' or 'torchvision', got {variant!r}")
        if norm not in ("lrn", "bn"):
            raise ValueError(f"norm must be 'lrn' or 'bn', got {norm!r}")
        if variant == "torchvision" and norm != "bn":
            raise ValueError("variant='torchvision' is BatchNorm by definition: use norm='bn'")
        if transform_input and variant != "torchvision":
            raise ValueError("transform_input belongs to torchvision's ported weights: use variant='torchvision'")
        self.variant, self.norm, self.num_classes = variant, norm, num_classes
        # torchvision's published weights expect [-1, 1] input; never switched on behind the user's back.
        self.transform_input = transform_input
        # oneDNN (CPU) and cuDNN (with AMP) run these convolutions fastest on NHWC tensors: the
        # input is made channels-last once, and every layer keeps that layout. Same numbers.
        self.channels_last = channels_last
        bn = norm == "bn"
        paper = variant == "paper"
        lrn = (lambda: LocalResponseNorm(5, alpha=1e-4, beta=0.75)) if norm == "lrn" else nn.Identity

        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3, bn=bn)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.lrn1 = lrn()
        self.conv2 = BasicConv2d(64, 64, 1, bn=bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, bn=bn)
        self.lrn2 = lrn()
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        in_ch = 192
        branch3_kernel = 5 if paper else 3
        for name, cfg in INCEPTION_CFG.items():
            module = Inception(in_ch, cfg, bn=bn, branch3_kernel=branch3_kernel, fused=fused)
            setattr(self, f"inception{name}", module)
            in_ch = module.out_channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = (nn.MaxPool2d(3, stride=2, ceil_mode=True) if paper
                                 else nn.MaxPool2d(2, stride=2, ceil_mode=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # = avg pool 7x7/1 at 224, and defined at any size
        self.dropout = nn.Dropout(dropout if dropout is not None else (0.4 if paper else 0.2))
        self.fc = nn.Linear(1024, num_classes)

        self.feature_info: tuple[FeatureInfo, ...] = FEATURE_INFO
        self.out_channels = 1024
        self._check_contract()
        if init:
            init_weights(self)

    # -- the contract ---------------------------------------------------------------------------
    def _check_contract(self) -> None:
        for info in self.feature_info:
            module = getattr(self, f"inception{info.name}")
            if module.out_channels != info.channels:
                raise AssertionError(f"feature_info says {info.name} has {info.channels} channels, "
                                     f"the module gives {module.out_channels}")
        if self.feature_info[-1].channels != self.out_channels:
            raise AssertionError("out_channels must equal the last tap's channels")

    @property
    def taps(self) -> tuple[str, ...]:
        return tuple(info.name for info in self.feature_info)

    def set_fused(self, fused: bool) -> GoogLeNet:
        """Switch every Inception module between fused and unfused 1x1 execution (same weights)."""
        for name in INCEPTION_CFG:
            getattr(self, f"inception{name}").fused = fused
        return self

    # -- forward --------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"GoogLeNet expects an image batch of shape [N, 3, H, W], got {shape}")

    def prepare_input(self, x: Tensor) -> Tensor:
        """What every path into the trunk does first: torchvision's remap of ImageNet-normalised
        input to the [-1, 1] its TF-ported weights expect (only with ``transform_input``), and
        the switch to channels-last."""
        if self.transform_input:
            mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            x = x * (std / 0.5) + (mean - 0.5) / 0.5
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_features(self, x: Tensor, taps: Sequence[str] = ("3b", "4e", "5b")) -> OrderedDict[str, Tensor]:
        """Run the trunk up to the last requested tap; return ``{tap: [N, C, H/stride, W/stride]}``."""
        self._check_input(x)
        wanted = set(taps)
        unknown = wanted - set(self.taps)
        if unknown:
            raise ValueError(f"unknown tap(s) {sorted(unknown)}; GoogLeNet taps are {list(self.taps)}")
        out: OrderedDict[str, Tensor] = OrderedDict()
        x = self.prepare_input(x)
        for name in self._LAYERS:
            x = getattr(self, name)(x)
            tap = name[len("inception"):] if name.startswith("inception") else None
            if tap in wanted:
                out[tap] = x
                if len(out) == len(wanted):
                    break
        return OrderedDict((t, out[t]) for t in taps)

    def forward_head(self, x: Tensor) -> Tensor:
        """5b features ``[N, 1024, h, w]`` -> logits ``[N, num_classes]``."""
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x, ("5b",))["5b"])


class _PrepareInput(nn.Module):
    """``GoogLeNet.prepare_input`` as a module, for the front of a split-off trunk."""

    def __init__(self, model: GoogLeNet) -> None:
        super().__init__()
        self.transform_input, self.channels_last = model.transform_input, model.channels_last

    forward = GoogLeNet.prepare_input


def split_at(model: GoogLeNet, tap: str = "4e") -> tuple[nn.Sequential, nn.Sequential]:
    """Split the trunk after ``tap``: ``(trunk, head)``, sharing (not copying) the model's modules.

    For the C4 detector (spec §3): ``trunk`` is conv1 .. inception 4e (stride 16, 832 channels);
    ``head`` is pool4, inception 5a, 5b, applied to RoI-aligned 14x14 regions (-> 7x7).
    The trunk starts with the model's input preparation, so ``trunk(x)`` equals
    ``model.forward_features(x, (tap,))[tap]``.
    """
    layer = f"inception{tap}"
    if layer not in model._LAYERS:
        raise ValueError(f"unknown tap {tap!r}; GoogLeNet taps are {list(model.taps)}")
    cut = model._LAYERS.index(layer) + 1
    prep = _PrepareInput(model)
    trunk = nn.Sequential(OrderedDict([("prepare", prep)] + [(n, getattr(model, n)) for n in model._LAYERS[:cut]]))
    head = nn.Sequential(OrderedDict((n, getattr(model, n)) for n in model._LAYERS[cut:]))
    return trunk, head


def googlenet(num_classes: int = 1000, variant: Variant = "paper", norm: Norm | None = None,
              transform_input: bool = False, fused: bool = False, dropout: float | None = None,
              channels_last: bool = True, aux: bool = False, aux_pool: Literal["paper", "adaptive"] | None = None,
              aux_dropout: float = 0.7, weights: str | os.PathLike | None = None) -> nn.Module:
    """Build GoogLeNet.

    Args:
        num_classes: classifier outputs.
        variant: ``"paper"`` (Caffe BVLC) or ``"torchvision"`` (loads ``googlenet-1378be20.pth``).
        norm: ``"lrn"`` (paper: conv biases + LRN) or ``"bn"``; default ``"lrn"`` for the paper
            layout, ``"bn"`` (the only choice) for torchvision's.
        transform_input: torchvision layout only: remap ImageNet-normalised input to [-1, 1], as
            torchvision's ported weights expect. Off unless asked for; :func:`load_weights` refuses
            those weights without it.
        fused: run each Inception module's three input 1x1 convolutions as one (same result, faster).
        dropout: main-head dropout; default 0.4 (paper) or 0.2 (torchvision).
        channels_last: run the trunk on NHWC tensors (faster on oneDNN and cuDNN; same numbers).
        aux: return :class:`GoogLeNetWithAux` (pretraining) instead of :class:`GoogLeNet`.
        aux_pool: the auxiliary heads' pooling: ``"paper"`` (avg 5x5/3, needs 224 input) or
            ``"adaptive"`` (to 4x4 at any size); default per variant.
        aux_dropout: the auxiliary heads' dropout (paper: 0.7).
        weights: a local state-dict file to load (see :func:`load_weights`).
    """
    if norm is None:
        norm = "lrn" if variant == "paper" else "bn"
    model: nn.Module = GoogLeNet(num_classes, variant=variant, norm=norm, transform_input=transform_input,
                                 dropout=dropout, fused=fused, channels_last=channels_last)
    if aux:
        model = GoogLeNetWithAux(model, aux_pool=aux_pool, aux_dropout=aux_dropout)
    if weights is not None:
        load_weights(model, weights)
    return model


def googlenet_from_file(path: str | os.PathLike, variant: Variant = "paper", norm: Norm | None = None,
                        channels_last: bool = True) -> tuple[GoogLeNet, dict]:
    """The GoogLeNet a weights file holds, built as the file says, and the file's metadata
    (layout, input normalisation; ``{}`` when it has none). The class count comes from its
    classifier; its metadata's ``variant``/``norm`` win over the arguments; torchvision's
    published file gets ``transform_input``."""
    path = os.fspath(path)
    sd, meta = read_weights(path)
    num = sd["fc.weight"].shape[0] if "fc.weight" in sd else 1000
    net = googlenet(num, variant=meta.get("variant", variant), norm=meta.get("norm", norm),
                    transform_input=bool(meta.get("transform_input", False))
                    or "googlenet-1378be20" in os.path.basename(path), channels_last=channels_last)
    load_weights(net, sd, name=path)
    return net, meta
