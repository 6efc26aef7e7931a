"""The auxiliary classifiers of pretraining (paper §5) and the network that carries them.

The backbone (:class:`backbone.googlenet.GoogLeNet`) has none: its ``forward`` returns logits in
every mode. :class:`GoogLeNetWithAux` adds the two heads on 4a and 4d and returns
``(logits, aux1, aux2)`` in train and eval mode alike, for :func:`aux_loss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .init import init_weights
from .layers import BasicConv2d

if TYPE_CHECKING:
    from .googlenet import GoogLeNet

# Paper §5: "the losses of the auxiliary classifiers were weighted by 0.3". The one place it lives.
AUX_LOSS_WEIGHT = 0.3


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
