"""Caffe's BVLC GoogLeNet read from a caffemodel (backbone/caffe.py): the wire format both ways,
the prototxt's names, the input convention, and the errors."""

from __future__ import annotations

import os
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from backbone.caffe import (
    CAFFE_MEAN_BGR,
    bvlc_names,
    read_caffemodel,
    to_caffe_layers,
    write_caffemodel,
)
from backbone.googlenet import googlenet
from backbone.pretrain.data import eval_transform
from backbone.weights import WeightsError, read_weights

PROTOTXT = os.path.join(os.path.dirname(__file__), "data", "bvlc_googlenet_train_val.prototxt")


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    m = googlenet(1000, variant="paper", aux=True, aux_pool="paper")
    with torch.no_grad():  # non-zero biases, so that a bias lost or swapped shows
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    return m.eval()


@pytest.mark.parametrize("v1", [False, True], ids=["LayerParameter", "V1LayerParameter"])
def test_caffemodel_loads_back_bit_for_bit(paper_model, tmp_path, v1):
    path = tmp_path / "bvlc_googlenet.caffemodel"
    write_caffemodel(path, to_caffe_layers(paper_model.state_dict(), v1=v1), v1=v1)
    assert 50e6 < os.path.getsize(path) < 56e6  # BVLC's own file is 53.5 MB
    loaded = googlenet(1000, variant="paper", aux=True, aux_pool="paper", weights=path)
    for (k, a), b in zip(paper_model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    # into the backbone alone, the auxiliary heads are dropped
    trunk = googlenet(1000, variant="paper", weights=path)
    assert torch.equal(trunk.fc.weight, paper_model.backbone.fc.weight)


def test_name_table_covers_the_prototxt():
    text = open(PROTOTXT).read()
    layers = re.findall(r'layer \{\s*name: "([^"]+)"\s*type: "([^"]+)"', text)
    with_params = {n for n, t in layers if t in ("Convolution", "InnerProduct")}
    assert len(with_params) == 64 and set(bvlc_names()) == with_params
    # and every module of the paper layout with parameters is named once
    m = googlenet(1000, variant="paper", aux=True, aux_pool="paper")
    modules = {k.removeprefix("backbone.").rsplit(".", 1)[0] for k in m.state_dict()}
    assert sorted(bvlc_names().values()) == sorted(modules)


def test_caffe_input_convention(paper_model, tmp_path):
    """Caffe's forward (BGR, 0..255, minus the mean, its own conv1) equals ours on the RGB image
    normalised as the file's metadata says."""
    path = tmp_path / "m.caffemodel"
    layers = to_caffe_layers(paper_model.state_dict())
    write_caffemodel(path, layers)
    sd, meta = read_weights(path)
    assert meta["variant"] == "paper" and meta["norm"] == "lrn" and meta["caffe_input"]["colour"] == "BGR"
    ours = googlenet(1000, variant="paper", channels_last=False).eval()
    ours.load_state_dict(OrderedDict((k, v) for k, v in sd.items() if not k.startswith("aux")))
    caffe = googlenet(1000, variant="paper", channels_last=False).eval()
    caffe.load_state_dict(ours.state_dict())
    with torch.no_grad():
        caffe.conv1.conv.weight.copy_(torch.from_numpy(layers["conv1/7x7_s2"][0]))  # the file's BGR filters

    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    norm = (tuple(meta["input"]["mean"]), tuple(meta["input"]["std"]))
    x = eval_transform(32, 32, norm)(image=rgb)["image"]
    bgr = rgb[..., ::-1].astype(np.float32) - np.array(CAFFE_MEAN_BGR, np.float32)
    assert np.allclose(x[..., ::-1], bgr, atol=1e-3)
    with torch.no_grad():
        a = ours(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
        b = caffe(torch.from_numpy(bgr.transpose(2, 0, 1).copy())[None])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-3)


def test_detector_config_takes_the_caffemodel(paper_model, tmp_path):
    from core.config import load_config
    from detector.config import DetConfig, build_model

    path = tmp_path / "bvlc_googlenet.caffemodel"
    write_caffemodel(path, to_caffe_layers(paper_model.state_dict()))
    cfg = load_config(DetConfig, "configs/ilsvrc_det.yaml", [f"model.weights={path}"])
    det = build_model(cfg.model, 3)
    params = {k: v for k, v in det.state_dict().items() if k.endswith("inception4a.branch3.1.conv.weight")}
    assert len(params) == 1 and torch.equal(next(iter(params.values())),
                                            paper_model.backbone.inception4a.branch3[1].conv.weight)
    assert det.transform.image_mean == pytest.approx([123 / 255, 117 / 255, 104 / 255])
    assert det.transform.image_std == pytest.approx([1 / 255] * 3)


def test_other_networks_and_broken_files_are_one_clear_error(tmp_path):
    alexnet = OrderedDict((n, [np.zeros((4, 3, 3, 3), np.float32), np.zeros(4, np.float32)])
                          for n in ("conv1", "conv2", "fc6", "fc8"))
    write_caffemodel(tmp_path / "alexnet.caffemodel", alexnet, net_name="AlexNet")
    assert list(read_caffemodel(tmp_path / "alexnet.caffemodel")) == list(alexnet)
    with pytest.raises(WeightsError, match=r"alexnet.caffemodel: not Caffe's BVLC GoogLeNet: its layers are \['conv1'"):
        read_weights(tmp_path / "alexnet.caffemodel")
    good = tmp_path / "g.caffemodel"
    write_caffemodel(good, to_caffe_layers(googlenet(1000, variant="paper").state_dict()))
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(good.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError, match="cut.caffemodel: not a readable caffemodel .*; download it again"):
        read_weights(cut)
    with pytest.raises(WeightsError, match="no such weights file"):
        read_weights(tmp_path / "missing.caffemodel")
