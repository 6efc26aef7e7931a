"""Weight averaging for the model scored and exported (paper §6: "Polyak averaging [13] was used to
create the final model used at inference time").

* ``polyak``: Polyak & Juditsky (1992) average the iterates uniformly: the arithmetic mean of the
  weights after every optimiser step of the last ``polyak_epochs`` epochs
  (``torch.optim.swa_utils.AveragedModel`` with its default average). Averaged BatchNorm
  statistics would not be the statistics of the averaged weights, so BN layouts get theirs
  recomputed on training batches (as SWA does, Izmailov et al. 2018, ``swa_utils.update_bn``).
* ``ema``: the exponential moving average most reimplementations use instead (parameters and
  buffers, after every step). With ``ramp``, the decay grows with the number of steps averaged,
  ``min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``ExponentialMovingAverage`` with
  ``num_updates``), so that a run of a few hundred steps is not averaged with its random start:
  a constant 0.999 would still weigh the first weights by 0.999^500 = 0.61 after 500 steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage(nn.Module):
    """The averaged copy of a model and the step from which it is updated.

    ``update(model, steps_done)`` after every optimiser step (``steps_done`` counts the steps
    taken so far); a step enters the average only once ``steps_done > start_step``."""

    def __init__(self, model: nn.Module, kind: str, *, ema_decay: float = 0.9999, ramp: bool = False,
                 start_step: int = 0) -> None:
        super().__init__()
        if kind not in ("ema", "polyak"):
            raise ValueError(f"averaging must be 'ema' or 'polyak', got {kind!r}")
        self.kind, self.start_step = kind, start_step
        if kind == "ema":
            if not 0.0 < ema_decay < 1.0:
                raise ValueError(f"ema_decay must be between 0 and 1, not {ema_decay}")
            update = ramped_ema(ema_decay) if ramp else get_ema_multi_avg_fn(ema_decay)
            self.averaged = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
        else:  # the default average is the running arithmetic mean
            self.averaged = AveragedModel(model, use_buffers=False)

    @property
    def module(self) -> nn.Module:
        """The averaged network (same class as the model)."""
        return self.averaged.module

    @property
    def steps_averaged(self) -> int:
        return int(self.averaged.n_averaged.item())

    @property
    def needs_bn_update(self) -> bool:
        return self.kind == "polyak" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                             for m in self.module.modules())

    def update(self, model: nn.Module, steps_done: int) -> None:
        if steps_done > self.start_step:
            self.averaged.update_parameters(model)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def ramp_decay(decay: float, n_averaged: int) -> float:
    """The EMA's decay after ``n_averaged`` updates: ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1 + n_averaged) / (10 + n_averaged))


def ramped_ema(decay: float):
    """``AveragedModel``'s ``multi_avg_fn`` for an EMA whose decay ramps up to ``decay``."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = ramp_decay(decay, int(n_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked): rounded as AveragedModel's own EMA
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))

    return update


@torch.no_grad()
def recompute_bn(model: nn.Module, images: Iterable[torch.Tensor], device: torch.device,
                 channels_last: bool = False) -> int:
    """BatchNorm running statistics of ``model`` re-estimated as the plain mean over ``images``
    (batches ``[B, 3, H, W]``), as ``torch.optim.swa_utils.update_bn`` does. Returns the number
    of batches used; the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = {}
    for m in norms:
        m.reset_running_stats()
        momenta[m] = m.momentum
        m.momentum = None  # cumulative average over the batches
    model.train()
    n = 0
    for x in images:
        if x.numel() == 0:
            continue
        x = x.to(device)
        model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
        n += 1
    for m in norms:
        m.momentum = momenta[m]
    model.eval()
    return n
