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


# -- files written by the protobuf runtime from caffe.proto's schema, not by backbone.caffe ---------

def caffe_messages() -> dict:
    """The messages of BVLC's ``src/caffe/proto/caffe.proto`` that a trained GoogLeNet file uses,
    with their field numbers there (fields the reader skips included), as descriptors for Google's
    protobuf runtime: the files below are serialised by it, independently of ``backbone.caffe``.
    ``V1LayerParameter.type`` is an enum in caffe.proto; a varint on the wire, it is an int32 here."""
    pytest.importorskip("google.protobuf", reason="protobuf (installed with tensorboard) builds the files")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    opt, rep = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    schema = {
        "BlobShape": [("dim", 1, f.TYPE_INT64, rep, "packed")],
        "BlobProto": [("num", 1, f.TYPE_INT64, opt, None), ("channels", 2, f.TYPE_INT64, opt, None),
                      ("height", 3, f.TYPE_INT64, opt, None), ("width", 4, f.TYPE_INT64, opt, None),
                      ("data", 5, f.TYPE_FLOAT, rep, "packed"), ("diff", 6, f.TYPE_FLOAT, rep, "packed"),
                      ("shape", 7, f.TYPE_MESSAGE, opt, "BlobShape")],
        "FillerParameter": [("type", 1, f.TYPE_STRING, opt, None), ("value", 2, f.TYPE_FLOAT, opt, None),
                            ("std", 6, f.TYPE_FLOAT, opt, None)],
        "ParamSpec": [("lr_mult", 3, f.TYPE_FLOAT, opt, None), ("decay_mult", 4, f.TYPE_FLOAT, opt, None)],
        "NetStateRule": [("phase", 1, f.TYPE_INT32, opt, None)],
        "ConvolutionParameter": [("num_output", 1, f.TYPE_UINT32, opt, None), ("pad", 3, f.TYPE_UINT32, rep, None),
                                 ("kernel_size", 4, f.TYPE_UINT32, rep, None), ("stride", 6, f.TYPE_UINT32, rep, None),
                                 ("weight_filler", 7, f.TYPE_MESSAGE, opt, "FillerParameter"),
                                 ("bias_filler", 8, f.TYPE_MESSAGE, opt, "FillerParameter")],
        "InnerProductParameter": [("num_output", 1, f.TYPE_UINT32, opt, None),
                                  ("weight_filler", 3, f.TYPE_MESSAGE, opt, "FillerParameter"),
                                  ("bias_filler", 4, f.TYPE_MESSAGE, opt, "FillerParameter")],
        "LayerParameter": [("name", 1, f.TYPE_STRING, opt, None), ("type", 2, f.TYPE_STRING, opt, None),
                           ("bottom", 3, f.TYPE_STRING, rep, None), ("top", 4, f.TYPE_STRING, rep, None),
                           ("loss_weight", 5, f.TYPE_FLOAT, rep, None), ("param", 6, f.TYPE_MESSAGE, rep, "ParamSpec"),
                           ("blobs", 7, f.TYPE_MESSAGE, rep, "BlobProto"),
                           ("include", 8, f.TYPE_MESSAGE, rep, "NetStateRule"),
                           ("convolution_param", 106, f.TYPE_MESSAGE, opt, "ConvolutionParameter"),
                           ("inner_product_param", 117, f.TYPE_MESSAGE, opt, "InnerProductParameter")],
        "V1LayerParameter": [("bottom", 2, f.TYPE_STRING, rep, None), ("top", 3, f.TYPE_STRING, rep, None),
                             ("name", 4, f.TYPE_STRING, opt, None), ("type", 5, f.TYPE_INT32, opt, None),
                             ("blobs", 6, f.TYPE_MESSAGE, rep, "BlobProto"), ("blobs_lr", 7, f.TYPE_FLOAT, rep, None),
                             ("weight_decay", 8, f.TYPE_FLOAT, rep, None),
                             ("convolution_param", 10, f.TYPE_MESSAGE, opt, "ConvolutionParameter"),
                             ("inner_product_param", 17, f.TYPE_MESSAGE, opt, "InnerProductParameter"),
                             ("include", 32, f.TYPE_MESSAGE, rep, "NetStateRule")],
        "NetParameter": [("name", 1, f.TYPE_STRING, opt, None), ("layers", 2, f.TYPE_MESSAGE, rep, "V1LayerParameter"),
                         ("layer", 100, f.TYPE_MESSAGE, rep, "LayerParameter")],
    }
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")
    for name, fields in schema.items():
        m = proto.message_type.add(name=name)
        for fname, number, kind, label, extra in fields:
            field = m.field.add(name=fname, number=number, type=kind, label=label)
            if kind == f.TYPE_MESSAGE:
                field.type_name = f".caffe.{extra}"
            elif extra == "packed":
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}")) for name in schema}


def prototxt_layers(path: str) -> list[dict]:
    """Each top-level ``layer { ... }`` of a prototxt: its own fields (name, type, bottom, top,
    include phase) and those of its ``*_param`` blocks (num_output, kernel_size, stride, pad)."""
    layers, depth, block = [], 0, ""
    for line in open(path):
        line = line.split("#")[0].strip()
        if not line:
            continue
        if line.endswith("{"):
            depth, block = depth + 1, line[:-1].strip()
            if depth == 1:
                layers.append({"bottom": [], "top": []})
            continue
        if line == "}":
            depth -= 1
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        value = value.strip('"')
        if depth == 1 and key in ("bottom", "top"):
            layers[-1][key].append(value)
        elif depth == 1:
            layers[-1][key] = value
        elif block == "include" and key == "phase":
            layers[-1]["phase"] = 0 if value == "TRAIN" else 1
        elif block.endswith("_param") and key in ("num_output", "kernel_size", "stride", "pad"):
            layers[-1][key] = int(value)
    return layers


V1_TYPES = {"Data": 5, "Convolution": 4, "ReLU": 18, "Pooling": 17, "LRN": 15, "Concat": 3, "Dropout": 6,
            "InnerProduct": 14, "SoftmaxWithLoss": 21, "Accuracy": 1}  # caffe.proto's V1LayerParameter.LayerType


def protobuf_caffemodel(blobs: dict[str, list[np.ndarray]], v1: bool) -> bytes:
    """BVLC GoogLeNet's train_val.prototxt, every layer, as a trained ``NetParameter`` holding
    ``blobs`` (Caffe's layouts): ``LayerParameter`` with ``shape`` blobs, or ``V1LayerParameter``
    with the legacy 4-D num/channels/height/width, as the model zoo's 2014 file has them."""
    pb = caffe_messages()
    net = pb["NetParameter"](name="GoogleNet")
    for spec in prototxt_layers(PROTOTXT):
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = spec["name"]
        layer.type = V1_TYPES[spec["type"]] if v1 else spec["type"]
        layer.bottom.extend(spec["bottom"])
        layer.top.extend(spec["top"])
        if "phase" in spec:
            layer.include.add(phase=spec["phase"])
        if spec["type"] not in ("Convolution", "InnerProduct"):
            continue
        if v1:
            layer.blobs_lr.extend([1, 2])
            layer.weight_decay.extend([1, 0])
        else:
            layer.param.add(lr_mult=1, decay_mult=1)
            layer.param.add(lr_mult=2, decay_mult=0)
        conv = spec["type"] == "Convolution"
        params = layer.convolution_param if conv else layer.inner_product_param
        params.num_output = spec["num_output"]
        if conv:
            params.kernel_size.append(spec["kernel_size"])
            params.stride.extend([spec["stride"]] if "stride" in spec else [])
            params.pad.extend([spec["pad"]] if "pad" in spec else [])
        params.weight_filler.type, params.bias_filler.type, params.bias_filler.value = "xavier", "constant", 0.2
        for array in blobs[spec["name"]]:
            blob = layer.blobs.add()
            if v1:
                blob.num, blob.channels, blob.height, blob.width = [1] * (4 - array.ndim) + list(array.shape)
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    return net.SerializeToString()


@pytest.mark.parametrize("v1", [False, True], ids=["LayerParameter", "V1LayerParameter"])
def test_a_caffemodel_serialised_by_protobuf_from_caffe_proto_loads_exactly(paper_model, tmp_path, v1):
    """The loader reads a file it did not write: BVLC's network serialised by the protobuf runtime
    from caffe.proto's schema, with every layer and the fields the loader skips (types, tops,
    phases, learning-rate specs, convolution settings and fillers)."""
    sd = paper_model.state_dict()
    blobs = {}
    for caffe, ours in bvlc_names().items():
        w = sd[f"backbone.{ours}.weight" if f"backbone.{ours}.weight" in sd else f"{ours}.weight"].numpy()
        b = sd[f"backbone.{ours}.bias" if f"backbone.{ours}.bias" in sd else f"{ours}.bias"].numpy()
        blobs[caffe] = [w[:, ::-1].copy() if caffe == "conv1/7x7_s2" else w, b]  # Caffe's conv1 takes BGR
    path = tmp_path / "bvlc_googlenet.caffemodel"
    path.write_bytes(protobuf_caffemodel(blobs, v1))
    assert 50e6 < os.path.getsize(path) < 56e6  # BVLC's own file is 53.5 MB
    loaded = googlenet(1000, variant="paper", aux=True, aux_pool="paper", weights=path)
    for (k, a), b in zip(sd.items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert sorted(read_caffemodel(path)) == sorted(bvlc_names())  # exactly the parameterised layers


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
