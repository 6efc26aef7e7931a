"""The paper's recipe elements (backbone/pretrain): weight averaging (EMA, Polyak), Caffe's bias
settings, Howard's photometric distortions and AlexNet's PCA lighting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backbone.pretrain.config import OptimConfig, PretrainConfig, build_model, build_optimizer
from backbone.pretrain.photometric import (
    HowardColour,
    PCALighting,
    enhance,
    lighting_covariance,
    lighting_offset,
)
from core.averaging import WeightAverage, recompute_bn
from core.trainer import set_lr


# -- averaging ----------------------------------------------------------------------------------
def set_weight(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model.weight.fill_(value)


def test_ema_update():
    model = nn.Linear(2, 1, bias=False)
    set_weight(model, 1.0)
    ema = WeightAverage(model, "ema", ema_decay=0.9)
    set_weight(model, 3.0)
    ema.update(model, 1)  # the first update starts the average at the current weights
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 3.0))
    set_weight(model, 5.0)
    ema.update(model, 2)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9 * 3.0 + 0.1 * 5.0))
    set_weight(model, -1.0)
    ema.update(model, 3)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.9 * 3.2 + 0.1 * -1.0))


def test_ramped_ema_decays_as_tensorflows_num_updates_then_holds_its_decay():
    model = nn.BatchNorm1d(2)  # parameters and buffers, an integer one among them
    ema = WeightAverage(model, "ema", ema_decay=0.6, ramp=True)
    expected = None
    for step in range(1, 31):
        w = float(step % 3)
        model.weight.data.fill_(w)
        model.running_mean.fill_(w)
        ema.update(model, step)
        n = step - 1  # updates averaged before this one; the first starts at the weights
        decay = min(0.6, (1 + n) / (10 + n))  # the cap takes over from n = 14
        expected = w if expected is None else decay * expected + (1 - decay) * w
        assert abs(ema.module.weight[0].item() - expected) < 1e-5, step
        assert abs(ema.module.running_mean[0].item() - expected) < 1e-5, step
    for ramp, decay in ((True, 1.0), (False, 0.0)):  # either EMA, one check
        with pytest.raises(ValueError, match="between 0 and 1"):
            WeightAverage(model, "ema", ema_decay=decay, ramp=ramp)


def test_polyak_is_the_uniform_mean_from_its_start_step():
    model = nn.Linear(2, 1, bias=False)
    avg = WeightAverage(model, "polyak", start_step=2)
    for step, w in enumerate([7.0, 9.0, 1.0, 2.0, 6.0], 1):
        set_weight(model, w)
        avg.update(model, step)  # steps 1 and 2 are before the window
    assert avg.steps_averaged == 3
    assert torch.allclose(avg.module.weight, torch.full((1, 2), 3.0))
    assert not avg.needs_bn_update
    with pytest.raises(ValueError, match="averaging must be"):
        WeightAverage(model, "swa")


def test_bn_statistics_recomputed_as_the_plain_mean_over_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    avg = WeightAverage(model, "polyak")
    avg.update(model, 1)
    assert avg.needs_bn_update
    batches = [torch.randn(2, 3, 5, 5) * (i + 1) + i for i in range(3)]
    n = recompute_bn(avg.module, iter(batches), torch.device("cpu"))
    with torch.no_grad():
        feats = [avg.module[0](b) for b in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    bn = avg.module[1]
    assert n == 3 and torch.allclose(bn.running_mean, mean, atol=1e-5)
    assert torch.allclose(bn.running_var, var, rtol=1e-4)
    assert bn.momentum == 0.1 and not bn.training


# -- Caffe's bias settings ----------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["lrn", "bn"])
def test_biases_get_twice_the_learning_rate_and_no_weight_decay(norm):
    cfg = PretrainConfig()
    cfg.model.norm, cfg.model.aux_pool, cfg.data.crop = norm, "adaptive", 64
    model = build_model(cfg, 10)
    o = OptimConfig(weight_decay=0.1, bias_lr_mult=2.0, momentum=0.9)
    opt = build_optimizer(model, o, 0.05)
    set_lr(opt, 0.05)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # the first momentum step is the plain gradient step
    params = dict(model.named_parameters())
    fc_b, fc_w = "backbone.fc.bias", "backbone.fc.weight"
    assert torch.allclose(before[fc_b] - params[fc_b], torch.full_like(params[fc_b], 0.1))  # 2 x 0.05, no decay
    assert torch.allclose(before[fc_w] - params[fc_w], 0.05 * (1 + 0.1 * before[fc_w]), atol=1e-7)
    if norm == "lrn":
        b = "backbone.conv1.conv.bias"
        assert torch.allclose(before[b] - params[b], torch.full_like(params[b], 0.1))
    else:  # BatchNorm's scale and shift: the base rate, no decay
        for k in ("backbone.conv1.bn.weight", "backbone.conv1.bn.bias"):
            assert torch.allclose(before[k] - params[k], torch.full_like(params[k], 0.05)), k
    n_bias = sum(p.numel() for k, p in params.items() if k.endswith("bias") and ".bn." not in k)
    groups = {g["lr_mult"]: g for g in opt.param_groups if g["lr_mult"] == 2.0}
    assert sum(p.numel() for p in groups[2.0]["params"]) == n_bias and groups[2.0]["weight_decay"] == 0.0


# -- Howard's distortions -----------------------------------------------------------------------
def test_howard_factors_stay_in_range_in_random_order():
    t = HowardColour((0.5, 1.5))
    t.set_random_seed(0)
    draws = [t.get_params_dependent_on_data({}, {}) for _ in range(2000)]
    factors = np.array([d["factors"] for d in draws])
    assert factors.min() >= 0.5 and factors.max() <= 1.5
    assert factors.min() < 0.52 and factors.max() > 1.48 and abs(factors.mean() - 1.0) < 0.02  # uniform
    orders = {tuple(d["order"]) for d in draws}
    assert len(orders) == 6 and all(sorted(o) == ["brightness", "colour", "contrast"] for o in orders)


def test_howard_operations_are_pils():
    rng = np.random.default_rng(0)
    img = rng.integers(40, 200, (8, 8, 3), dtype=np.uint8)
    x = img.astype(np.float64)
    grey = np.rint(x @ np.array([0.299, 0.587, 0.114]))  # PIL's convert("L")

    def close(a, b):  # uint8 rounding: within 1 level
        return a.dtype == np.uint8 and np.abs(a.astype(np.float64) - b).max() <= 1.0

    assert close(enhance(img, "brightness", 1.3), np.clip(x * 1.3, 0, 255))  # clipped, as PIL
    mean = int(grey.mean() + 0.5)
    assert close(enhance(img, "contrast", 0.5), mean + 0.5 * (x - mean))
    assert close(enhance(img, "colour", 0.0), np.repeat(grey[..., None], 3, 2))  # colour 0: the grey image
    assert close(enhance(img, "colour", 1.4), np.clip(grey[..., None] + 1.4 * (x - grey[..., None]), 0, 255))
    out = HowardColour()(image=img)["image"]
    assert out.dtype == np.uint8 and out.shape == img.shape and not np.array_equal(out, img)


def test_pca_lighting_has_alexnets_covariance():
    t = PCALighting(0.1)
    t.set_random_seed(0)
    grey = np.full((2, 2, 3), 128.0, np.float32)
    offsets = np.array([t(image=grey)["image"][0, 0] - 128.0 for _ in range(20000)])  # [N, 3]
    want = lighting_covariance(0.1)  # V diag((0.1 * lambda)^2) V^T, in 0..255 units
    got = np.cov(offsets.T)
    assert np.abs(offsets.mean(0)).max() < 0.1
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.05
    # the dominant direction is the eigenvector of the largest eigenvalue (about equal R, G, B)
    top = np.linalg.eigh(got)[1][:, -1]
    assert abs(abs(top @ np.array([-0.5675, -0.5808, -0.5836]))) > 0.999
    assert np.allclose(lighting_offset(np.array([1.0, 0.0, 0.0])), 255 * 0.2175 * np.array([-0.5675, -0.5808, -0.5836]))
    # a uint8 image gets the same offset, rounded and saturated
    img = np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    params = t.get_params_dependent_on_data({}, {})
    want = np.clip(np.rint(img + params["offset"] * 20), 0, 255)  # large enough to saturate somewhere
    got = t.apply(img, params["offset"] * 20)
    assert got.dtype == np.uint8 and np.abs(got - want).max() <= 1 and (want == 255).any() | (want == 0).any()
