"""Initial weights: Caffe's BVLC fillers for the paper layout, He for the paper layout with
BatchNorm, torchvision's truncated normal for its layout."""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

Variant = Literal["paper", "torchvision"]
Norm = Literal["lrn", "bn"]


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
