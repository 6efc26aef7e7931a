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
stride per tap. The auxiliary heads are not part of this module: they live in
:class:`GoogLeNetWithAux`, the pretraining wrapper, which returns ``(logits, aux1, aux2)`` in train
and eval mode alike.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Variant = Literal["paper", "torchvision"]
Norm = Literal["lrn", "bn"]

# Paper §5: "the losses of the auxiliary classifiers were weighted by 0.3". The one place it lives.
AUX_LOSS_WEIGHT = 0.3

# torchvision's ImageNet normalisation; what every layout here expects unless ``transform_input``.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Paper Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj) per Inception module.
INCEPTION_CFG: "OrderedDict[str, tuple[int, int, int, int, int, int]]" = OrderedDict(
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


class LocalResponseNorm(nn.Module):
    """Caffe's LRN across channels: ``x / (k + alpha/n * sum_{window n} x^2) ** beta``.

    Same result as ``nn.LocalResponseNorm`` (tests check it), computed differently: PyTorch pads
    and runs ``avg_pool3d`` over a 5-D view, which took over half of the paper layout's CPU
    forward time. Here the squares go into a channel-padded buffer laid out channels-last and the
    window sum is ``size`` shifted slices of it added up: memory-bound passes over the contiguous
    channel axis (a banded ``[C, C]`` matmul measured 2x slower, a running sum no faster). The
    power ``-0.75`` is ``rsqrt(d) * sqrt(rsqrt(d))`` rather than ``pow``.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        # PyTorch's and Caffe's window: size // 2 channels before, (size - 1) // 2 after.
        before, after = self.size // 2, (self.size - 1) // 2
        xc = x.movedim(1, -1)  # [N, H, W, C], a view
        if torch.onnx.is_in_onnx_export():  # PyTorch's own (equal; tested): exportable ops only
            return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        grad = torch.is_grad_enabled() and x.requires_grad
        if grad:
            padded = F.pad(xc * xc, (before, after))  # [N, H, W, C + size - 1]
            div = sum(padded[..., i:i + c] for i in range(self.size)).movedim(-1, 1)  # [N, C, H, W]
            return x * div.mul(self.alpha / self.size).add(self.k).pow(-self.beta)
        # Inference: fewest passes and fresh buffers (large ones page-fault on every call). Each
        # padded entry holds k/n + alpha/n * x^2, so the window sum is already the divisor.
        padded = x.new_empty(*xc.shape[:-1], c + self.size - 1)
        padded[..., :before].fill_(self.k / self.size)
        padded[..., before + c:].fill_(self.k / self.size)
        torch.addcmul(x.new_tensor(self.k / self.size), xc, xc, value=self.alpha / self.size,
                      out=padded[..., before:before + c])
        win = padded[..., 0:c] + padded[..., 1:c + 1]  # [N, H, W, C]
        for i in range(2, self.size):
            win.add_(padded[..., i:i + c])
        div = win.movedim(-1, 1)  # [N, C, H, W], channels-last strides
        if self.beta == 0.75:  # d^-0.75 = rsqrt(d) * sqrt(rsqrt(d)), much cheaper than pow
            div.rsqrt_()
            div.mul_(torch.sqrt(div, out=padded[..., 0:c].movedim(-1, 1)))
        else:
            div.pow_(-self.beta)
        return div.mul_(x)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class BasicConv2d(nn.Module):
    """conv -> (BatchNorm) -> ReLU. Keys ``conv.*`` and ``bn.*`` match torchvision's BasicConv2d."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=not bn)
        # eps 1e-3 as torchvision's (a TensorFlow port); needed for its weights to reproduce.
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001) if bn else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.conv(x))

    def post(self, y: Tensor, inplace: bool = True) -> Tensor:
        """What follows the convolution; the fused 1x1 path calls it on its slice of the output."""
        return F.relu(self.bn(y), inplace=inplace)


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | pool 3x3/1 -> 1x1.

    ``fused=True`` runs the three 1x1 convolutions that read the module input (branch1, and the
    reductions of branch2 and branch3) as one convolution with concatenated filters, then splits
    its output: one large GEMM instead of three thin ones (on the 2-core CPU measured no
    consistent gain, so it is off by default: README, "Benchmarks"). The weights stay in the three
    ``BasicConv2d`` modules, so state dicts are the same either way, and BN still normalises each
    channel on its own, so the result equals the unfused module's (tests/test_googlenet.py).
    """

    def __init__(self, in_ch: int, cfg: tuple[int, int, int, int, int, int], bn: bool,
                 branch3_kernel: int, fused: bool = False) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = cfg
        self.branch1 = BasicConv2d(in_ch, c1, 1, bn=bn)
        self.branch2 = nn.Sequential(BasicConv2d(in_ch, c3r, 1, bn=bn),
                                     BasicConv2d(c3r, c3, 3, padding=1, bn=bn))
        self.branch3 = nn.Sequential(BasicConv2d(in_ch, c5r, 1, bn=bn),
                                     BasicConv2d(c5r, c5, branch3_kernel, padding=branch3_kernel // 2, bn=bn))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_ch, cp, 1, bn=bn))
        self.fused = fused
        self.out_channels = c1 + c3 + c5 + cp
        self._split = (c1, c3r, c5r)

    def forward(self, x: Tensor) -> Tensor:
        if self.fused:
            heads = (self.branch1, self.branch2[0], self.branch3[0])
            weight = torch.cat([h.conv.weight for h in heads])  # [c1 + c3r + c5r, C, 1, 1]
            bias = None if heads[0].conv.bias is None else torch.cat([h.conv.bias for h in heads])
            y1, y2, y3 = F.conv2d(x, weight, bias).split(self._split, dim=1)
            # Autograd forbids in-place ops on the views split() returns; BN makes new tensors.
            ip = not (torch.is_grad_enabled() and isinstance(heads[0].bn, nn.Identity))
            b1 = heads[0].post(y1, ip)
            b2 = self.branch2[1](heads[1].post(y2, ip))
            b3 = self.branch3[1](heads[2].post(y3, ip))
        else:
            b1, b2, b3 = self.branch1(x), self.branch2(x), self.branch3(x)
        return torch.cat([b1, b2, b3, self.branch4(x)], dim=1)


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

    def set_fused(self, fused: bool) -> "GoogLeNet":
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

    def forward_features(self, x: Tensor, taps: Sequence[str] = ("3b", "4e", "5b")) -> "OrderedDict[str, Tensor]":
        """Run the trunk up to the last requested tap; return ``{tap: [N, C, H/stride, W/stride]}``."""
        self._check_input(x)
        wanted = set(taps)
        unknown = wanted - set(self.taps)
        if unknown:
            raise ValueError(f"unknown tap(s) {sorted(unknown)}; GoogLeNet taps are {list(self.taps)}")
        out: "OrderedDict[str, Tensor]" = OrderedDict()
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


class InceptionAux(nn.Module):
    """Paper §5: avg pool 5x5/3 -> conv 1x1 128 + ReLU -> FC 1024 + ReLU -> dropout 0.7 -> linear."""

    def __init__(self, in_ch: int, num_classes: int, bn: bool, adaptive_pool: bool, dropout: float = 0.7) -> None:
        super().__init__()
        # The paper's 5x5/3 gives 4x4 from the 14x14 map of a 224 input; torchvision pools
        # adaptively to 4x4, which also serves other input sizes (the miniature's, say).
        self.pool = nn.AdaptiveAvgPool2d(4) if adaptive_pool else nn.AvgPool2d(5, stride=3, ceil_mode=True)
        self.conv = BasicConv2d(in_ch, 128, 1, bn=bn)
        self.fc1 = nn.Linear(2048, 1024)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        if x.shape[1] != 2048:
            raise ValueError(f"the auxiliary head's 5x5/3 pooling needs a 14x14 map (224x224 input), it gave "
                             f"{x.shape[1] // 128} cells: train at 224, or build with aux_pool='adaptive'")
        return self.fc2(self.dropout(F.relu(self.fc1(x), inplace=True)))


class GoogLeNetWithAux(nn.Module):
    """The pretraining network: backbone plus the auxiliary heads on 4a and 4d.

    ``forward`` returns ``(logits, aux1, aux2)`` in train and eval mode alike (aux1 reads 4a, aux2
    reads 4d); combine them with :func:`aux_loss`. Its keys are ``backbone.*``, ``aux1.*``,
    ``aux2.*``; :func:`load_weights` also takes torchvision's flat layout (``conv1.*``, ``aux1.*``).
    """

    def __init__(self, backbone: GoogLeNet, aux_pool: Literal["paper", "adaptive"] | None = None,
                 aux_dropout: float = 0.7, init: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        bn = backbone.norm == "bn"
        if aux_pool is None:
            aux_pool = "adaptive" if backbone.variant == "torchvision" else "paper"
        if aux_pool not in ("paper", "adaptive"):
            raise ValueError(f"aux_pool must be 'paper' or 'adaptive', got {aux_pool!r}")
        adaptive = aux_pool == "adaptive"
        self.aux1 = InceptionAux(512, backbone.num_classes, bn=bn, adaptive_pool=adaptive, dropout=aux_dropout)
        self.aux2 = InceptionAux(528, backbone.num_classes, bn=bn, adaptive_pool=adaptive, dropout=aux_dropout)
        if init:
            init_weights(self.aux1, backbone.variant, backbone.norm)
            init_weights(self.aux2, backbone.variant, backbone.norm)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.backbone.forward_features(x, ("4a", "4d", "5b"))
        return self.backbone.forward_head(f["5b"]), self.aux1(f["4a"]), self.aux2(f["4d"])


def aux_loss(main: Tensor, aux1: Tensor, aux2: Tensor) -> Tensor:
    """Paper §5: total loss = main + 0.3 x (aux1 + aux2), each a scalar loss."""
    return main + AUX_LOSS_WEIGHT * (aux1 + aux2)


def init_weights(module: nn.Module, variant: Variant | None = None, norm: Norm | None = None) -> None:
    """Paper layout: Caffe's BVLC fillers (Xavier weights, conv biases 0.2, classifier biases 0).
    Paper layout with BN: He (Kaiming) normal for convolutions, as BN networks are trained today;
    with Caffe's Xavier it failed to learn at lr 0.01 on the miniature, He init learned.
    torchvision layout: torchvision's truncated normal (std 0.01). BN: weight 1, bias 0."""
    variant = variant or getattr(module, "variant", "paper")
    norm = norm or getattr(module, "norm", "lrn")
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d) and variant == "paper" and norm == "bn":
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            if variant == "paper":
                # Caffe's "xavier" filler: U(-a, a), a = sqrt(3 / fan_in).
                fan_in = m.weight[0].numel()
                bound = math.sqrt(3.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    # BVLC prototxt: conv and aux FC biases 0.2; classifier biases 0.
                    is_classifier = name.split(".")[-1] in ("fc", "fc2")
                    nn.init.constant_(m.bias, 0.0 if is_classifier else 0.2)
            else:
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


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


class WeightsError(ValueError):
    """A weights file that cannot be loaded into the model; the message names the file and the fix."""


# The one file whose provenance requires transform_input (spec §1, "Known departures").
_TORCHVISION_PUBLISHED = "googlenet-1378be20"


def read_state_dict(path: str | os.PathLike) -> "OrderedDict[str, Tensor]":
    """Read a state dict from ``path``: a plain ``{key: tensor}`` file, or a checkpoint holding one
    under ``"model"``/``"state_dict"``. Anything else is a :class:`WeightsError`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zip files, text files ...
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'})") from None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of parameter names to tensors, "
                           f"got {type(obj).__name__})")
    return OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]) -> nn.Module:
    """Load GoogLeNet weights strictly, with errors that say what is wrong.

    Into a :class:`GoogLeNet`, a file with auxiliary heads (``aux1.*``, ``aux2.*``, as torchvision's)
    loads with those heads dropped; every other missing or unexpected key, and every shape
    mismatch, is a :class:`WeightsError` naming the file, the keys and the likely cause.
    """
    name = os.fspath(source) if not isinstance(source, Mapping) else "<state dict>"
    sd = read_state_dict(source) if not isinstance(source, Mapping) else OrderedDict(source)
    backbone = model.backbone if isinstance(model, GoogLeNetWithAux) else model
    if not isinstance(backbone, GoogLeNet):
        raise TypeError(f"load_weights takes a GoogLeNet or GoogLeNetWithAux, got {type(model).__name__}")
    if _TORCHVISION_PUBLISHED in os.path.basename(name) and not backbone.transform_input:
        raise WeightsError(f"{name}: torchvision's published weights expect [-1, 1] input: build with "
                           "googlenet(variant='torchvision', transform_input=True)")
    # One flat key space: torchvision's (``conv1.*``, ``aux1.*``); the wrapper nests its backbone.
    sd = OrderedDict((k.removeprefix("backbone."), v) for k, v in sd.items())
    if not isinstance(model, GoogLeNetWithAux):
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(("aux1.", "aux2.")))
    own = OrderedDict((k.removeprefix("backbone."), v) for k, v in model.state_dict().items())
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if len(missing) > len(own) // 2:  # another network altogether (a ResNet shares only fc.*)
        raise WeightsError(f"{name}: not GoogLeNet weights: {len(own) - len(missing)} of the {len(own)} expected "
                           f"keys are present (the file has e.g. {list(sd)[:3]})")
    if missing or unexpected:
        hint = ""
        if any(k.startswith(("aux1.", "aux2.")) for k in missing):
            hint = "; the file has no auxiliary heads: load it into the backbone (aux=False)"
        elif any(".bn." in k for k in missing) or any(".bn." in k for k in unexpected):
            hint = f"; BatchNorm keys differ: the model is norm={backbone.norm!r}, check the file's norm"
        raise WeightsError(f"{name}: {len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected "
                           f"key(s) {unexpected[:3]}{hint}")
    for k, v in own.items():
        if v.shape != sd[k].shape:
            hint = ""
            if k.endswith("fc.weight") or k.endswith("fc.bias") or k.endswith("fc2.weight"):
                hint = f"; the file has a different number of classes than num_classes={backbone.num_classes}"
            elif ".branch3.1." in k:
                hint = (f"; the 5x5 branch differs: the model is variant={backbone.variant!r}, the file is the other "
                        "layout")
            raise WeightsError(f"{name}: shape of {k} is {tuple(sd[k].shape)} in the file, "
                               f"{tuple(v.shape)} in the model{hint}")
    if isinstance(model, GoogLeNetWithAux):
        sd = OrderedDict((k if k.startswith(("aux1.", "aux2.")) else f"backbone.{k}", v) for k, v in sd.items())
    model.load_state_dict(sd, strict=True)
    return model
