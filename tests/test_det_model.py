"""The GoogLeNet Faster R-CNN builders: structure, the no-resize contract, weights, freezing."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from backbone.googlenet import googlenet
from detector.model import C4BoxHead, ClassOnlyPredictor, FPNBackbone, anchor_sizes_for, googlenet_faster_rcnn

SMALL = dict(rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=100,
             rpn_post_nms_top_n_test=20, box_batch_size_per_image=16)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batch():
    torch.manual_seed(0)
    images = [torch.rand(3, 96, 128), torch.rand(3, 112, 80)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]  # a negative image
    return images, targets


@pytest.mark.parametrize("head", ["c4", "fpn"])
@pytest.mark.parametrize("bbox_reg", [True, False])
def test_train_and_inference_steps(head, bbox_reg):
    model = googlenet_faster_rcnn(3, head=head, bbox_reg=bbox_reg, **SMALL)
    images, targets = batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_objectness", "loss_rpn_box_reg"} | (
        {"loss_box_reg"} if bbox_reg else set())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.body.inception4e.branch1.conv.weight.grad is not None if head == "c4" else \
        model.backbone.net.inception4e.branch1.conv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model(images)
    for o, im in zip(out, images):
        h, w = im.shape[1:]
        assert o["boxes"].shape[1] == 4 and len(o["boxes"]) == len(o["scores"]) == len(o["labels"])
        assert (o["boxes"][:, 2] <= w + 1e-3).all() and (o["boxes"][:, 3] <= h + 1e-3).all()
        assert ((o["labels"] >= 1) & (o["labels"] <= 3)).all()


def test_c4_layout_follows_the_spec():
    model = googlenet_faster_rcnn(200, head="c4", bbox_reg=False, **SMALL)
    assert model.backbone.out_channels == 832 and model.backbone.stride == 16
    assert model.roi_heads.box_roi_pool.output_size == (14, 14)
    assert model.roi_heads.box_roi_pool.featmap_names == ["0"]
    head = model.roi_heads.box_head
    assert isinstance(head, C4BoxHead) and head.body.maxpool4.kernel_size == 3 and head.body.maxpool4.stride == 2
    rois = torch.rand(5, 832, 14, 14)
    assert head(rois).shape == (5, 1024)  # 14 -> pool4 -> 7 -> 5a -> 5b -> average
    assert isinstance(model.roi_heads.box_predictor, ClassOnlyPredictor)
    assert model.roi_heads.box_predictor.cls_score.out_features == 201  # + background
    assert model.rpn.head.cls_logits.out_channels == 15  # 5 sizes x 3 ratios on the one map


def test_fpn_anchors_and_pooling_come_from_feature_info():
    model = googlenet_faster_rcnn(3, head="fpn", **SMALL)
    body = model.backbone
    assert isinstance(body, FPNBackbone) and body.strides == [8, 16, 32, 64]
    assert model.rpn.anchor_generator.sizes == anchor_sizes_for([8, 16, 32, 64]) == ((32,), (64,), (128,), (256,))
    feats = body(torch.rand(1, 3, 96, 128))
    assert list(feats) == ["0", "1", "2", "pool"] and all(f.shape[1] == 256 for f in feats.values())
    assert model.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2"]
    # sizes from the config: two per level, and the box head's width
    model = googlenet_faster_rcnn(3, head="fpn", anchor_sizes=[[16, 24], [32, 48], [64, 96], [128, 192]],
                                  representation_size=256, **SMALL)
    assert model.rpn.head.cls_logits.out_channels == 6 and model.roi_heads.box_predictor.cls_score.in_features == 256
    assert [o.shape[1] for o in model.rpn.head([torch.rand(1, 256, 4, 4)])[0]] == [6]


def test_the_fpn_region_head_with_convs_trains_every_layer_and_detects():
    """``box_head_convs``: torchvision's conv head (3x3 conv, BN, ReLU each, then one FC layer)
    in place of the two FC layers, reached by the loss in training and used at test time."""
    model = googlenet_faster_rcnn(3, head="fpn", box_head_convs=2, fpn_channels=32, representation_size=64, **SMALL)
    head = model.roi_heads.box_head
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(32, 32, (3, 3))] * 2
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in head.modules()) == 2
    assert head(torch.rand(5, 32, 7, 7)).shape == (5, 64)
    images, targets = batch()
    model.train()
    sum(model(images, targets).values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert all(o["boxes"].shape[1] == 4 for o in out)


def test_the_detector_never_resizes():
    model = googlenet_faster_rcnn(3, **SMALL).eval()
    images = [torch.rand(3, 97, 131), torch.rand(3, 300, 40)]
    image_list, _ = model.transform(images)
    assert image_list.image_sizes == [(97, 131), (300, 40)]  # torchvision's default would resize to 800


def test_backbone_weights_and_metadata_from_a_pretraining_export(tmp_path):
    from core.atomic import save_atomic

    net = googlenet(10, variant="paper", norm="bn")
    with torch.no_grad():
        net.conv1.bn.running_var.fill_(4.0)
    meta = {"variant": "paper", "norm": "bn", "input": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    path = tmp_path / "backbone.pth"
    save_atomic({"state_dict": net.state_dict(), "meta": meta}, str(path))
    model = googlenet_faster_rcnn(3, weights=path, **SMALL)
    trunk = model.backbone.body
    assert torch.equal(trunk.inception4e.branch1.conv.weight, net.inception4e.branch1.conv.weight)
    assert model.transform.image_mean == [0.5, 0.5, 0.5] and model.transform.image_std == [0.25, 0.25, 0.25]
    # frozen: conv1 and every BN, with the pretrained statistics
    assert not any(p.requires_grad for p in trunk.conv1.parameters())
    assert trunk.conv2.conv.weight.requires_grad
    assert isinstance(trunk.conv1.bn, FrozenBatchNorm2d) and torch.all(trunk.conv1.bn.running_var == 4.0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # the C4 region head is the pretrained network's 5a/5b
    assert torch.equal(model.roi_heads.box_head.body.inception5b.branch2[1].conv.weight,
                       net.inception5b.branch2[1].conv.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="head='c5': must be 'c4' or 'fpn'"):
        googlenet_faster_rcnn(3, head="c5")
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        googlenet_faster_rcnn(0)
    with pytest.raises(ValueError, match="trainable_from='conv9': not a layer"):
        googlenet_faster_rcnn(3, trainable_from="conv9")
    with pytest.raises(ValueError, match="the c4 head has 1 feature map"):
        googlenet_faster_rcnn(3, head="c4", anchor_sizes=[[32], [64]])


def test_every_model_key_is_the_builders_argument_and_its_errors_name_the_key():
    """One mapping from the config to the model: each ``model.<key>`` is the builder's argument of
    the same name, and what the builder refuses comes back as a ConfigError naming the config key."""
    import dataclasses
    import inspect

    from core.config import ConfigError, load_config_dict
    from detector.config import DetConfig, DetModelConfig, build_model

    builder = set(inspect.signature(googlenet_faster_rcnn).parameters)
    assert {f.name for f in dataclasses.fields(DetModelConfig)} <= builder
    for key, value, why in (("trainable_from", "conv9", "not a layer"), ("anchor_sizes", [[32], [64]], "feature map"),
                            ("box_refine_iters", -1, "a count >= 0"), ("box_head_convs", 2, "for head=fpn")):
        cfg = load_config_dict(DetConfig, {"model": {"weights": None, key: value}}, "test")
        with pytest.raises(ConfigError, match=rf"^model\.{key}=.*{why}"):
            build_model(cfg.model, 3)
    # a value reaches the model under its own name (here one the builder passes on to torchvision)
    cfg = load_config_dict(DetConfig, {"model": {"weights": None, "head": "fpn", "box_detections_per_img": 7,
                                                 "representation_size": 32}}, "test")
    model = build_model(cfg.model, 3)
    assert model.roi_heads.detections_per_img == 7 and model.roi_heads.box_head.fc7.out_features == 32


@pytest.mark.parametrize("name,kind", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)])
def test_the_optimiser_config_names_the_optimiser_over_the_trainable_parameters(name, kind):
    from core.config import ConfigError, load_config_dict
    from detector.config import DetConfig, build_optimizer

    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net[0].weight.requires_grad_(False)
    cfg = load_config_dict(DetConfig, {"optim": {"name": name, "lr": 0.002}}, "test")
    opt = build_optimizer(net, cfg.optim, cfg.optim.scaled_lr(4))
    assert type(opt) is kind and opt.param_groups[0]["lr"] == pytest.approx(0.0005)
    assert opt.param_groups[0]["weight_decay"] == cfg.optim.weight_decay
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in net.parameters() if p.requires_grad}
    with pytest.raises(ConfigError, match="optim.name"):
        load_config_dict(DetConfig, {"optim": {"name": "adam"}}, "test")


def test_the_schedules_warm_up_then_step_or_follow_the_cosine_to_zero():
    from core.config import load_config_dict
    from detector.config import DetConfig, build_schedule

    o = load_config_dict(DetConfig, {"optim": {"warmup_iters": 10, "warmup_factor": 0.1, "milestones": [3, 4]}},
                         "test").optim
    step = build_schedule(o, 1.0, steps_per_epoch=10, epochs=5)
    assert [step(g) for g in (0, 5, 10, 29)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [step(g) for g in (30, 39, 40, 49)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    cos = build_schedule(dataclasses.replace(o, schedule="cosine"), 1.0, steps_per_epoch=10, epochs=5)
    assert cos(0) == pytest.approx(0.1) and cos(10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 5)))
    assert cos(25) == pytest.approx(0.5) and cos(50) == pytest.approx(0.0, abs=1e-12)  # milestones unused
    assert all(cos(g) > cos(g + 1) for g in range(10, 49))


def test_detector_summary_counts_each_part_and_the_c4_region_head_is_inception_5():
    """The C4 region head on a 7x7 region is inception 5a + 5b as Table 1 counts them at 224 px, plus
    the classifier's two linear layers; the parts' parameters add up to the model's."""
    from backbone.summary import layer_table
    from core.config import load_config
    from detector.config import DetConfig, build_model
    from detector.summary import summarize, table

    cfg = load_config(DetConfig, os.path.join(ROOT, "configs", "ilsvrc_det.yaml"),
                      ["data.test_scale=224", "data.max_size=400", "model.rpn_post_nms_top_n_test=10"])
    trunk, rpn, head, whole = summarize(cfg, 200)
    rows = {r.name: r.macs for r in layer_table(googlenet(variant="paper", norm="lrn"), 224)}
    predictor = 1024 * 201 + 1024 * 201 * 4
    assert head.macs == 10 * (rows["inception5a"] + rows["inception5b"] + predictor)
    assert trunk.params + rpn.params + head.params == whole.params == sum(
        p.numel() for p in build_model(dataclasses.replace(cfg.model, weights=None), 200).parameters())
    assert whole.macs == trunk.macs + rpn.macs + head.macs and trunk.note == "at 224x299"
    cfg.model.rpn_post_nms_top_n_test = 20  # twice the regions, twice the head
    assert summarize(cfg, 200)[2].macs == 2 * head.macs
    assert "region head" in table([trunk, rpn, head, whole])


def test_config_reaches_the_model_and_adamw_runs_fused_with_the_reference_steps():
    from detector.config import DetModelConfig, DetOptimConfig, build_model, build_optimizer

    model = build_model(DetModelConfig(head="fpn", box_nms_thresh=0.3, representation_size=64), 3)
    assert model.roi_heads.nms_thresh == 0.3 and model.roi_heads.score_thresh == 0.01
    torch.manual_seed(0)
    net, ref = nn.Linear(5, 4), nn.Linear(5, 4)
    ref.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    opt = build_optimizer(net, DetOptimConfig(name="adamw", weight_decay=0.05), 1e-2)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05, foreach=False)
    assert opt.defaults["fused"] is True
    for step in range(3):
        for m in (net, ref):
            for p in m.parameters():
                p.grad = torch.full_like(p, 0.1 * (step + 1)) + p.detach()
        opt.step()
        ref_opt.step()
    for a, b, a0 in zip(net.parameters(), ref.parameters(), start):
        assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, a0, atol=1e-3)
