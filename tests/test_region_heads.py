"""The region head's training options (detector.heads): the GIoU box loss computed from the deltas
alone equals GIoU on the decoded boxes, moved copies of the objects join the training regions
near their objects, and a detector trained with them keeps the plain one's parameters."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_iou, generalized_box_iou

from core.config import ConfigError, load_config
from detector.config import DetConfig, build_model
from detector.heads import giou_loss_deltas, jittered_xyxy
from detector.model import googlenet_faster_rcnn

CODER = BoxCoder((10.0, 10.0, 5.0, 5.0))  # torchvision's region-head weights


def test_giou_loss_from_deltas_is_giou_of_the_boxes_they_make_of_each_region():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 300
    regions = torch.cat([xy, xy + 8 + torch.rand(50, 2, generator=g) * 200], 1)  # [50, 4], wide and tall ones
    pred, target = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g)
    decoded_p, decoded_t = CODER.decode_single(pred, regions), CODER.decode_single(target, regions)
    expected = (1 - torch.diag(generalized_box_iou(decoded_p, decoded_t))).sum()
    torch.testing.assert_close(giou_loss_deltas(pred, target, CODER.weights), expected, rtol=1e-4, atol=1e-4)
    assert giou_loss_deltas(target, target, CODER.weights).abs() < 1e-5  # a perfect box costs nothing


def test_moved_copies_stay_near_their_object_and_are_boxes():
    torch.manual_seed(0)
    gt = torch.tensor([[100.0, 100.0, 300.0, 250.0], [10.0, 20.0, 14.0, 60.0]])
    copies = jittered_xyxy(gt, 300)
    assert len(copies) == 300 and all(c.shape == (2, 4) for c in copies)
    moved = torch.stack(copies)  # [300, 2, 4]
    assert (moved[..., 2:] >= moved[..., :2] + 1 - 1e-4).all()
    iou = box_iou(moved[:, 0], gt[:1])[:, 0]  # [300]
    assert 0.65 < iou.median() < 0.82 and (iou > 0.5).float().mean() > 0.95 and (iou < 0.95).all()
    assert jittered_xyxy(gt, 0) == [] and jittered_xyxy(gt[:0], 3) == []


def train_losses(**options) -> dict:
    torch.manual_seed(0)
    model = googlenet_faster_rcnn(2, head="fpn", fpn_channels=32, representation_size=32, trainable_from=None,
                                  norm="bn", rpn_post_nms_top_n_train=50, box_batch_size_per_image=32, **options)
    images = [torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[20.0, 10.0, 90.0, 80.0]]), "labels": torch.tensor([1])}]
    return model, model.train()(images, targets)


def test_a_giou_trained_head_has_the_plain_heads_parameters_and_a_finite_box_loss():
    plain, plain_losses = train_losses()
    giou, giou_losses = train_losses(box_loss="giou", gt_jitter=4)
    assert plain.state_dict().keys() == giou.state_dict().keys()  # checkpoints load into either
    assert set(giou_losses) == set(plain_losses)
    assert torch.isfinite(giou_losses["loss_box_reg"]) and giou_losses["loss_box_reg"] > 0
    heads = giou.roi_heads
    regions = heads.add_gt_proposals([torch.zeros(7, 4)], [torch.tensor([[20.0, 10.0, 90.0, 80.0]])])
    assert len(regions[0]) == 7 + 1 + 4  # the regions, the object, four moved copies


@pytest.mark.parametrize("override, key", [("model.gt_jitter=-1", "model.gt_jitter"),
                                           ("model.box_vote_iou=0", "model.box_vote_iou")])
def test_bad_settings_are_config_errors_naming_the_key(override, key):
    cfg = load_config(DetConfig, None, [override])
    with pytest.raises(ConfigError, match=key):
        build_model(cfg.model, 2)
