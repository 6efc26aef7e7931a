"""The building blocks of GoogLeNet: Caffe's local response normalisation, conv (+ BN) + ReLU, and
the Inception module (paper §4, Figure 2b)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    its output: one large GEMM instead of three thin ones (on a 2-core CPU it shows no
    consistent gain, so it is off by default: docs/benchmarks.md). The weights stay in the three
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
