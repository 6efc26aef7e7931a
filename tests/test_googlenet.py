"""The backbone against the spec (../shared/docs/googlenet.md §1) and against torchvision."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from backbone.aux import AUX_LOSS_WEIGHT, GoogLeNetWithAux, aux_loss
from backbone.googlenet import GoogLeNet, googlenet, googlenet_from_file, split_at
from backbone.layers import LocalResponseNorm
from backbone.summary import layer_table
from backbone.weights import WeightsError, load_weights


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- sizes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,plain,with_aux", [("paper", 6_998_552, 13_378_280),
                                                     ("torchvision", 6_624_904, 13_004_888)])
def test_parameter_counts(variant, plain, with_aux):
    assert n_params(googlenet(variant=variant)) == plain
    assert n_params(googlenet(variant=variant, aux=True)) == with_aux


def test_torchvision_layout_counts_equal_torchvisions_own():
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    assert n_params(googlenet(variant="torchvision", aux=True)) == n_params(tv)


def test_paper_macs_and_stage_shapes_at_224():
    rows = {r.name: r for r in layer_table(googlenet(variant="paper"), 224)}
    total = sum(r.macs for r in rows.values())
    assert abs(total / 1.583e9 - 1) < 0.005, total
    # conv1 is 9.4K params / 118M MACs (the paper's table misprints it; spec §1)
    assert rows["conv1"].params == 9_472 and abs(rows["conv1"].macs - 118e6) < 0.5e6
    expected = {  # spec §1 table: [C, H, W]
        "conv1": (64, 112, 112), "maxpool1": (64, 56, 56), "conv3": (192, 56, 56), "maxpool2": (192, 28, 28),
        "inception3a": (256, 28, 28), "inception3b": (480, 28, 28), "maxpool3": (480, 14, 14),
        "inception4a": (512, 14, 14), "inception4b": (512, 14, 14), "inception4c": (512, 14, 14),
        "inception4d": (528, 14, 14), "inception4e": (832, 14, 14), "maxpool4": (832, 7, 7),
        "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7), "avgpool": (1024, 1, 1), "fc": (1000,),
    }
    for name, shape in expected.items():
        assert rows[name].shape == shape, (name, rows[name].shape)
    assert sum(r.params for r in rows.values()) == 6_998_552


def test_paper_layout_is_the_caffe_one():
    m = googlenet(variant="paper")
    assert isinstance(m.lrn1, LocalResponseNorm) and isinstance(m.lrn2, LocalResponseNorm)
    assert m.conv1.conv.bias is not None and isinstance(m.conv1.bn, nn.Identity)
    assert m.inception3a.branch3[1].conv.kernel_size == (5, 5)
    assert all(p.ceil_mode and p.kernel_size == 3 and p.stride == 2
               for p in (m.maxpool1, m.maxpool2, m.maxpool3, m.maxpool4))
    assert m.dropout.p == 0.4
    bn = googlenet(variant="paper", norm="bn")
    assert bn.conv1.conv.bias is None and isinstance(bn.conv1.bn, nn.BatchNorm2d)
    assert isinstance(bn.lrn1, nn.Identity) and bn.inception3a.branch3[1].conv.kernel_size == (5, 5)


def test_caffe_initialisation():
    torch.manual_seed(0)
    m = googlenet(variant="paper", aux=True)
    conv = m.backbone.inception4e.branch2[1].conv  # fan_in 160 * 9
    bound = math.sqrt(3.0 / (160 * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert abs(conv.weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound  # uniform's std
    assert torch.all(conv.bias == 0.2)
    assert torch.all(m.backbone.fc.bias == 0) and torch.all(m.aux1.fc2.bias == 0)
    assert torch.all(m.aux1.fc1.bias == 0.2) and torch.all(m.aux2.conv.conv.bias == 0.2)


def test_lrn_equals_pytorch_lrn_in_value_and_gradient():
    torch.manual_seed(0)
    for channels in (1, 3, 64, 192):
        for cl in (False, True):
            x = torch.relu(torch.randn(2, channels, 9, 11)) * 300  # Caffe-scale activations
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            ref_in, ours_in = x.clone().requires_grad_(), x.clone().requires_grad_()
            ref = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)(ref_in)
            ours = LocalResponseNorm(5, alpha=1e-4, beta=0.75)(ours_in)
            torch.testing.assert_close(ours, ref, rtol=2e-6, atol=1e-6)
            ref.pow(2).sum().backward()
            ours.pow(2).sum().backward()
            # LRN's gradient is a difference of nearly equal terms at this scale: compare against its size
            scale = ref_in.grad.abs().max().item()
            torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-3, atol=1e-4 * scale)
            with torch.no_grad():  # the in-place inference path
                torch.testing.assert_close(LocalResponseNorm()(x), ref.detach(), rtol=2e-6, atol=1e-6)
    with torch.no_grad():
        x = torch.rand(1, 8, 3, 3) * 50
        torch.testing.assert_close(LocalResponseNorm(3, alpha=2e-3, beta=0.6, k=2.0)(x),
                                   nn.LocalResponseNorm(3, alpha=2e-3, beta=0.6, k=2.0)(x))


# -- torchvision parity --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    torch.manual_seed(1)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    # Non-trivial BN statistics, so that eval mode is a real test of running stats and eps.
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp("weights") / "tv_googlenet.pth"
    torch.save(tv.state_dict(), path)
    return tv.eval(), path


@pytest.mark.parametrize("transform_input", [False, True])
def test_torchvision_layout_reproduces_torchvision(torchvision_file, transform_input):
    tv, path = torchvision_file
    tv.transform_input = transform_input
    torch.manual_seed(2)
    x = torch.randn(2, 3, 224, 224)
    ours = googlenet(variant="torchvision", transform_input=transform_input, aux=True, weights=path).eval()
    with torch.no_grad():
        logits, aux1, aux2 = ours(x)
        ref = tv(x)
        torch.testing.assert_close(logits, ref, rtol=0, atol=1e-5)
        # torchvision's aux1 reads 4a, aux2 reads 4d (it returns them swapped; spec §1)
        t = tv._transform_input(x)
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                     "inception4a"):
            t = getattr(tv, name)(t)
        torch.testing.assert_close(aux1, tv.aux1(t), rtol=0, atol=1e-5)
    # The backbone alone loads the same file, leaving the aux heads out.
    plain = googlenet(variant="torchvision", transform_input=transform_input, weights=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), ref, rtol=0, atol=1e-5)


def test_published_torchvision_weights_require_transform_input(torchvision_file, tmp_path):
    _, path = torchvision_file
    published = tmp_path / "googlenet-1378be20.pth"
    published.write_bytes(path.read_bytes())
    with pytest.raises(WeightsError, match="transform_input=True"):
        googlenet(variant="torchvision", weights=published)
    assert googlenet(variant="torchvision", transform_input=True, weights=published).transform_input
    # built from the file alone (what the detector and --eval-only do), it gets transform_input
    net, meta = googlenet_from_file(published, variant="torchvision")
    assert net.transform_input and net.variant == "torchvision" and meta == {}


def test_wrapper_checkpoints_round_trip(tmp_path):
    a = googlenet(variant="paper", norm="bn", aux=True)
    path = tmp_path / "wrapper.pth"
    torch.save({"model": a.state_dict(), "epoch": 3}, path)  # nested keys, inside a checkpoint
    b = googlenet(variant="paper", norm="bn", aux=True, weights=path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    backbone_only = googlenet(variant="paper", norm="bn", weights=path)  # export: aux heads dropped
    assert torch.equal(backbone_only.fc.weight, a.backbone.fc.weight)


# -- output contract ------------------------------------------------------------------------------
def test_forward_returns_logits_in_both_modes_and_wrapper_a_triple_in_both():
    m = googlenet(num_classes=7, variant="paper")
    x = torch.randn(2, 3, 224, 224)
    for mode in (True, False):
        m.train(mode)
        assert m(x).shape == (2, 7)
    w = googlenet(num_classes=7, variant="paper", aux=True)
    for mode in (True, False):
        w.train(mode)
        out = w(x)
        assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 7)] * 3


def test_aux_loss_weighting():
    assert AUX_LOSS_WEIGHT == 0.3
    assert aux_loss(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)).item() == pytest.approx(1.0 + 0.3 * 6)


@pytest.mark.parametrize("variant,norm", [("paper", "lrn"), ("paper", "bn"), ("torchvision", "bn")])
@pytest.mark.parametrize("size", [(224, 224), (333, 500), (97, 131)])
def test_taps_have_declared_channels_and_strides(variant, norm, size):
    m = googlenet(variant=variant, norm=norm).eval()
    h, w = size
    with torch.no_grad():
        feats = m.forward_features(torch.randn(1, 3, h, w), taps=m.taps)
    assert list(feats) == list(m.taps)
    for info in m.feature_info:
        f = feats[info.name]
        assert f.shape[1] == info.channels
        # ceil-mode pools round up, so a map is within one cell of input / stride
        assert abs(f.shape[2] - h / info.stride) <= 1 and abs(f.shape[3] - w / info.stride) <= 1, (info, f.shape)
    assert [i.stride for i in m.feature_info if i.name in ("3b", "4e", "5b")] == [8, 16, 32]
    assert [i.channels for i in m.feature_info if i.name in ("3b", "4e", "5b")] == [480, 832, 1024]


def test_forward_features_keeps_requested_order_and_stops_early():
    m = googlenet().eval()
    x = torch.randn(1, 3, 224, 224)
    calls = []
    m.inception5a.register_forward_hook(lambda *a: calls.append("5a"))
    with torch.no_grad():
        out = m.forward_features(x, taps=("4e", "3b"))
    assert list(out) == ["4e", "3b"] and calls == []
    with pytest.raises(ValueError, match="unknown tap"):
        m.forward_features(x, taps=("6a",))


@pytest.mark.parametrize("variant,transform_input", [("paper", False), ("torchvision", True)])
def test_split_at_4e_gives_c4_trunk_and_head(variant, transform_input):
    m = googlenet(variant=variant, transform_input=transform_input).eval()
    trunk, head = split_at(m, "4e")
    assert trunk.inception4e is m.inception4e and head.inception5a is m.inception5a  # shared, not copied
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        t = trunk(x)
        assert t.shape == (1, 832, 14, 14)
        torch.testing.assert_close(t, m.forward_features(x, ("4e",))["4e"])
        # a 14x14 RoI feature -> pool4 -> 5a -> 5b -> 7x7x1024
        assert head(t).shape == (1, 1024, 7, 7)
        torch.testing.assert_close(m.forward_head(head(t)), m(x))


# -- fused 1x1 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,norm", [("paper", "lrn"), ("paper", "bn"), ("torchvision", "bn")])
def test_fused_equals_unfused(variant, norm):
    torch.manual_seed(3)
    unfused = googlenet(variant=variant, norm=norm, fused=False)
    fused = googlenet(variant=variant, norm=norm, fused=True)
    fused.load_state_dict(unfused.state_dict())  # same weights, same keys
    assert fused.state_dict().keys() == unfused.state_dict().keys()
    x = torch.randn(2, 3, 160, 192)
    unfused.eval(), fused.eval()
    with torch.no_grad():
        assert (fused(x) - unfused(x)).abs().max() <= 1e-5
        f, u = fused.forward_features(x, fused.taps), unfused.forward_features(x, fused.taps)
        assert max((f[k] - u[k]).abs().max().item() for k in f) <= 1e-5
    # Gradients, in eval mode: train-mode BN at batch 2 amplifies rounding noise so much that
    # NCHW and channels-last runs of one unfused model differ by ~1% there.
    grads = []
    for m in (unfused, fused):
        m.zero_grad()
        m.forward_features(x, ("5b",))["5b"].square().mean().backward()
        grads.append([m.inception4c.branch2[0].conv.weight.grad, m.inception3a.branch1.conv.weight.grad,
                      m.conv1.conv.weight.grad])
    for gu, gf in zip(*grads):
        torch.testing.assert_close(gf, gu, rtol=1e-3, atol=1e-5 * gu.abs().max().item())
    # train mode: the same loss and the same BN statistics
    unfused.train(), fused.train()
    lu = unfused.forward_features(x, ("5b",))["5b"].square().mean()
    lf = fused.forward_features(x, ("5b",))["5b"].square().mean()
    assert abs(lu.item() - lf.item()) <= 1e-4 * max(1.0, abs(lu.item()))
    if norm == "bn":
        torch.testing.assert_close(fused.inception3a.branch1.bn.running_mean,
                                   unfused.inception3a.branch1.bn.running_mean)


def test_channels_last_does_not_change_results():
    torch.manual_seed(5)
    a = googlenet(variant="paper", channels_last=True).eval()
    b = googlenet(variant="paper", channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() <= 1e-5


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [torch.randn(1, 1, 64, 64), torch.randn(1, 4, 64, 64), torch.randn(64, 64),
                                 torch.randn(3, 64, 64)])
def test_bad_input_shape_is_a_one_line_error(bad):
    m = googlenet()
    with pytest.raises(ValueError) as e:
        m(bad)
    msg = str(e.value)
    assert "[N, 3, H, W]" in msg and str(tuple(bad.shape)) in msg and "\n" not in msg


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="variant"):
        googlenet(variant="inception_v3")
    with pytest.raises(ValueError, match="norm='bn'"):
        googlenet(variant="torchvision", norm="lrn")
    with pytest.raises(ValueError, match="transform_input"):
        googlenet(variant="paper", transform_input=True)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_weights_file_errors(tmp_path, torchvision_file):
    _, tv_path = torchvision_file
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(WeightsError) as e:
        googlenet(weights=text)
    assert "notes.pth" in _one_line(e) and "not a readable PyTorch weights file" in str(e.value)

    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], a_list)
    with pytest.raises(WeightsError) as e:
        googlenet(weights=a_list)
    assert "not a state dict" in _one_line(e)

    with pytest.raises(WeightsError, match="no such weights file"):
        googlenet(weights=tmp_path / "missing.pth")

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tv_path.read_bytes()[:4096])
    with pytest.raises(WeightsError) as e:
        googlenet(variant="torchvision", weights=truncated)
    assert "truncated.pth" in _one_line(e)

    resnet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    with pytest.raises(WeightsError) as e:
        googlenet(weights=resnet)
    assert "not GoogLeNet weights" in _one_line(e)

    # torchvision's file into the paper layout: BN keys missing from the model, conv biases absent
    with pytest.raises(WeightsError) as e:
        googlenet(variant="paper", weights=tv_path)
    assert "BatchNorm" in _one_line(e)

    # the paper layout's BN file into the torchvision layout: the 5x5 branch differs
    paper_bn = tmp_path / "paper_bn.pth"
    torch.save(googlenet(variant="paper", norm="bn").state_dict(), paper_bn)
    with pytest.raises(WeightsError) as e:
        googlenet(variant="torchvision", weights=paper_bn)
    assert "5x5 branch" in _one_line(e)

    with pytest.raises(WeightsError) as e:
        googlenet(num_classes=200, variant="torchvision", weights=tv_path)
    assert "num_classes=200" in _one_line(e)

    with pytest.raises(WeightsError) as e:  # the wrapper needs the aux heads
        load_weights(googlenet(variant="paper", norm="bn", aux=True), paper_bn)
    assert "no auxiliary heads" in _one_line(e)


def test_classes_are_the_public_types():
    assert isinstance(googlenet(), GoogLeNet) and isinstance(googlenet(aux=True), GoogLeNetWithAux)
