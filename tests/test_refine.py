"""Box refinement at test time (detector.refine): each pass scores the previous pass's boxes
regressed at their best class, the passes join per image, and a detector, the shared ensemble
and an ensemble of one all detect the same way."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from core.config import ConfigError, load_config
from detector.config import DetConfig, build_model
from detector.ensemble import check_compatible, detect_shared
from detector.model import googlenet_faster_rcnn
from detector.refine import refine_regions, vote_xyxy

SMALL = dict(rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=20, box_score_thresh=0.0)
CODER = BoxCoder((10.0, 10.0, 5.0, 5.0))  # torchvision's region-head weights
TARGET = torch.tensor([40.0, 30.0, 80.0, 70.0])


def halfway_head(regions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A region head that knows where the object is: class 2 (the likelier, more so the closer the
    region) regresses each region halfway to TARGET; class 1 would push it 10 px off."""
    r = torch.cat(regions)  # [R, 4]
    closeness = 1 / (1 + (r - TARGET).abs().sum(1))  # [R]
    probs = torch.stack([0.4 - closeness / 4, torch.full_like(closeness, 0.2), 0.4 + closeness / 4, 0 * closeness], 1)
    deltas = torch.zeros(len(r), 4, 4)
    deltas[:, 2] = CODER.encode_single((r + TARGET) / 2, r)
    deltas[:, 1] = CODER.encode_single(r + 10, r)
    return probs, deltas.reshape(len(r), 16)


def test_each_pass_regresses_the_last_at_its_best_class_and_the_passes_join_per_image():
    regions = [torch.tensor([[0.0, 0.0, 20.0, 20.0], [60.0, 50.0, 100.0, 90.0]]),
               torch.tensor([[20.0, 10.0, 90.0, 99.0]])]
    sizes = [(100, 120), (100, 120)]
    same = refine_regions(halfway_head, regions, CODER, sizes, iters=0)
    assert all(torch.equal(a, b) for a, b in zip(same[0], regions))
    joined, probs, deltas = refine_regions(halfway_head, regions, CODER, sizes, iters=2)
    assert [len(j) for j in joined] == [6, 3]  # each image: its regions, then pass 1's, then pass 2's
    for img, start in zip(joined, regions):
        n = len(start)
        for k in range(3):  # pass k is 1 - 1/2^k of the way to the object
            torch.testing.assert_close(img[k * n:(k + 1) * n], start + (TARGET - start) * (1 - 0.5 ** k))
    # every row scores the region it sits beside, in the order the NMS reads them
    fresh_probs, fresh_deltas = halfway_head(joined)
    torch.testing.assert_close(probs, fresh_probs)
    torch.testing.assert_close(deltas, fresh_deltas)


def test_refined_boxes_stay_inside_the_image():
    joined, _, _ = refine_regions(halfway_head, [torch.tensor([[10.0, 10.0, 50.0, 50.0]])], CODER, [(40, 60)], iters=1)
    assert joined[0][1].tolist() == [25.0, 20.0, 60.0, 40.0]  # halfway is (25, 20, 65, 60): clipped to 60 x 40


@pytest.fixture(scope="module")
def refining_model():
    torch.manual_seed(0)
    return googlenet_faster_rcnn(3, head="fpn", box_refine_iters=2, **SMALL).eval()


def images():
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, 96, 128, generator=g), torch.rand(3, 112, 80, generator=g)]


def test_a_refining_detector_detects_as_its_ensemble_of_one_and_of_two_copies(refining_model):
    with torch.no_grad():
        alone = refining_model(images())
        refining_model.box_refine_iters = 0
        unrefined = refining_model(images())
        refining_model.box_refine_iters = 2
    one, members = detect_shared([refining_model], images(), with_members=True)
    two, _ = detect_shared([refining_model, refining_model], images())
    for a, o, m, t in zip(alone, one, members[0], two):
        assert len(a["boxes"]) > 0
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(o[key], a[key])
            torch.testing.assert_close(m[key], a[key])
            torch.testing.assert_close(t[key], a[key])
    # the passes change what is detected (more regions scored, boxes moved)
    assert any(len(a["boxes"]) != len(u["boxes"]) or not torch.allclose(a["boxes"], u["boxes"])
               for a, u in zip(alone, unrefined))


def test_refinement_needs_box_regression_and_members_that_agree(refining_model):
    with pytest.raises(ValueError, match="box_refine_iters=1"):
        googlenet_faster_rcnn(3, head="fpn", bbox_reg=False, box_refine_iters=1, **SMALL)
    torch.manual_seed(0)
    plain = googlenet_faster_rcnn(3, head="fpn", **SMALL).eval()
    with pytest.raises(ValueError, match="refines its boxes 0 times, member 0 2"):
        check_compatible([refining_model, plain])


def test_the_config_refuses_refinement_without_box_regression():
    cfg = load_config(DetConfig, None, ["model.bbox_reg=false", "model.box_refine_iters=2"])
    with pytest.raises(ConfigError, match="model.box_refine_iters=2"):
        build_model(cfg.model, 3)


def test_voting_averages_the_candidates_of_the_class_that_overlap_enough_weighted_by_score():
    kept, kept_labels = torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1])
    cands = torch.tensor([[0.0, 0.0, 10.0, 10.0],  # the kept box itself
                          [2.0, 0.0, 12.0, 10.0],  # IoU 8/12 = 0.67 with it
                          [0.0, 0.0, 10.0, 11.0],  # another class: never
                          [40.0, 40.0, 50.0, 50.0]])  # far away
    scores, labels = torch.tensor([0.9, 0.3, 0.99, 0.99]), torch.tensor([1, 1, 2, 1])
    voted = vote_xyxy(kept, kept_labels, cands, scores, labels, iou=0.6)
    torch.testing.assert_close(voted, torch.tensor([[0.5, 0.0, 10.5, 10.0]]))  # (0.9 * box 0 + 0.3 * box 1) / 1.2
    torch.testing.assert_close(vote_xyxy(kept, kept_labels, cands, scores, labels, iou=0.7), kept)


def test_voting_moves_boxes_only_and_is_a_test_time_setting(refining_model):
    with torch.no_grad():
        plain = refining_model(images())
        refining_model.set_test_time(**{**refining_model.test_time(), "box_vote_iou": 0.6})
        voted = refining_model(images())
        refining_model.set_test_time(**{**refining_model.test_time(), "box_vote_iou": None})
    moved = 0
    for p, v in zip(plain, voted):
        torch.testing.assert_close(v["scores"], p["scores"])  # NMS keeps what it kept; voting moves it
        assert torch.equal(v["labels"], p["labels"])
        moved += int((v["boxes"] - p["boxes"]).abs().amax(1).gt(0.5).sum())
    assert moved > 0
    with pytest.raises(ValueError, match="box_vote_iou=1.5"):
        refining_model.set_test_time(**{**refining_model.test_time(), "box_vote_iou": 1.5})
