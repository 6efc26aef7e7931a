"""Caffe's BVLC GoogLeNet (``bvlc_googlenet.caffemodel``, the model zoo's 68.7% top-1 / 88.9%
top-5 model) read from a local file into the ``paper`` layout, with no Caffe and no generated
protobuf code: a caffemodel is a serialised ``NetParameter`` (``src/caffe/proto/caffe.proto``),
and the few fields needed are read straight from the protobuf wire format.

Fields read (caffe.proto numbers):

* ``NetParameter``: ``name`` 1, ``layer`` 100 (``LayerParameter``), ``layers`` 2 (the older
  ``V1LayerParameter``);
* ``LayerParameter``: ``name`` 1, ``blobs`` 7; ``V1LayerParameter``: ``name`` 4, ``blobs`` 6,
  and ``layer`` 1 (a ``V0LayerParameter``: ``name`` 1, ``blobs`` 50) in the oldest files;
* ``BlobProto``: ``shape`` 7 (``BlobShape.dim`` 1), the legacy ``num/channels/height/width``
  1-4, ``data`` 5 (float), ``double_data`` 8.

Caffe feeds this model BGR pixels in 0..255 minus the mean (104, 117, 123) (``train_val.prototxt``'s
``mean_value``). The loader reorders conv1's input channels to RGB, so the network takes RGB like
every other weights file here, and records the rest in the metadata's ``input`` (mean 123, 117, 104
and std 1 on the 0..255 scale, written in 0..1 units); every tool normalises from that.
"""

from __future__ import annotations

import os
import struct
from collections import OrderedDict

import numpy as np
import torch

from .weights import WeightsError

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)


# -- the wire format -----------------------------------------------------------------------------
def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes | memoryview) -> list[tuple[int, int, int | memoryview]]:
    """A message's fields in order: ``(number, wire type, value)``; the value of a varint is an
    int, of a length-delimited field (a string, a nested message, a packed array) a memoryview,
    of a fixed 32/64-bit field its raw bytes. Malformed input raises ValueError."""
    buf, pos, out = memoryview(buf), 0, []
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("a field runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire} (groups or a corrupt file)")
        if number == 0:
            raise ValueError("field number 0")
        out.append((number, wire, value))
    if pos != len(buf):
        raise ValueError("truncated message")
    return out


def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _encode_varint(len(payload)) + payload


# -- blobs and layers ----------------------------------------------------------------------------
def _numbers(value: int | memoryview, wire: int, fmt: str) -> list:
    """A repeated numeric field's values, packed (wire type 2) or not; ``fmt`` is ``"varint"``
    (int32/int64) or a ``struct`` code of a fixed-width type (``"f"``, ``"d"``)."""
    if wire == 2 and fmt == "varint":
        out, pos = [], 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(v)
        return out
    if wire == 2:
        return list(struct.unpack(f"<{len(value) // struct.calcsize(fmt)}{fmt}", value))
    return [value if wire == 0 else struct.unpack(f"<{fmt}", value)[0]]


def read_blob(buf: memoryview) -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its shape (``shape``, else num/channels/height/width)."""
    shape, legacy, chunks, doubles = [], {}, [], []
    for number, wire, value in fields(buf):
        if number == 7:  # BlobShape
            shape += [d for n, w, v in fields(value) if n == 1 for d in _numbers(v, w, "varint")]
        elif number in (1, 2, 3, 4) and wire == 0:
            legacy[number] = value
        elif number == 5:
            chunks.append(np.frombuffer(value, "<f4") if wire == 2 else np.frombuffer(value, "<f4", 1))
        elif number == 8:
            doubles += _numbers(value, wire, "d")
    data = np.concatenate(chunks) if chunks else np.asarray(doubles, np.float64)
    if not shape:
        shape = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
    if int(np.prod(shape)) != data.size:
        raise ValueError(f"a blob of shape {shape} holds {data.size} values")
    return data.astype(np.float32).reshape(shape)


def read_caffemodel(path: str | os.PathLike) -> OrderedDict[str, list[np.ndarray]]:
    """``{layer name: [blobs]}`` of every layer with parameters in a ``.caffemodel``, in file order."""
    with open(path, "rb") as f:
        data = f.read()
    layers: OrderedDict[str, list[np.ndarray]] = OrderedDict()
    for number, wire, value in fields(data):
        if wire != 2 or number not in (100, 2):
            continue
        name_field, blob_field = (1, 7) if number == 100 else (4, 6)
        parts = fields(value)
        if number == 2 and any(n == 1 for n, _, _ in parts):  # V0: the layer nested in field 1
            parts = fields(next(v for n, _, v in parts if n == 1))
            name_field, blob_field = 1, 50
        name = next((bytes(v).decode("utf-8", "replace") for n, w, v in parts if n == name_field and w == 2), "")
        blobs = [read_blob(v) for n, w, v in parts if n == blob_field and w == 2]
        if blobs:
            layers[name] = blobs
    return layers


def write_caffemodel(path: str | os.PathLike, layers: OrderedDict[str, list[np.ndarray]], net_name: str = "GoogleNet",
                     v1: bool = False) -> None:
    """A ``.caffemodel`` of ``layers`` (``LayerParameter``, or ``V1LayerParameter`` with legacy
    4-D blob dims when ``v1``), as Caffe writes it: the inverse of :func:`read_caffemodel`."""
    out = bytearray(_bytes_field(1, net_name.encode()))
    for name, blobs in layers.items():
        body = bytearray(_bytes_field(4 if v1 else 1, name.encode()))
        for b in blobs:
            b = np.asarray(b, np.float32)
            if v1:
                dims = [1] * (4 - b.ndim) + list(b.shape)
                blob = b"".join(_key(i + 1, 0) + _encode_varint(d) for i, d in enumerate(dims))
            else:
                blob = _bytes_field(7, _bytes_field(1, b"".join(_encode_varint(d) for d in b.shape)))
            blob += _bytes_field(5, b.astype("<f4").tobytes())
            body += _bytes_field(6 if v1 else 7, blob)
        out += _bytes_field(2 if v1 else 100, bytes(body))
    with open(path, "wb") as f:
        f.write(bytes(out))


# -- BVLC GoogLeNet's names ----------------------------------------------------------------------
def bvlc_names() -> OrderedDict[str, str]:
    """BVLC ``train_val.prototxt`` layer name -> this package's module (the ``paper`` layout, LRN;
    ``aux1``/``aux2`` are :class:`backbone.aux.GoogLeNetWithAux`'s heads)."""
    table = OrderedDict([("conv1/7x7_s2", "conv1.conv"), ("conv2/3x3_reduce", "conv2.conv"),
                         ("conv2/3x3", "conv3.conv")])
    branches = (("1x1", "branch1"), ("3x3_reduce", "branch2.0"), ("3x3", "branch2.1"), ("5x5_reduce", "branch3.0"),
                ("5x5", "branch3.1"), ("pool_proj", "branch4.1"))
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
        for caffe, ours in branches:
            table[f"inception_{block}/{caffe}"] = f"inception{block}.{ours}.conv"
    for k in (1, 2):
        table.update({f"loss{k}/conv": f"aux{k}.conv.conv", f"loss{k}/fc": f"aux{k}.fc1",
                      f"loss{k}/classifier": f"aux{k}.fc2"})
    table["loss3/classifier"] = "fc"
    return table


def read_bvlc_googlenet(path: str | os.PathLike) -> tuple[OrderedDict[str, torch.Tensor], dict]:
    """``bvlc_googlenet.caffemodel`` as a state dict of the ``paper`` layout (auxiliary heads as
    ``aux1.*``/``aux2.*``; conv1 reordered to take RGB) and its metadata (layout, input)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        layers = read_caffemodel(path)
    except (ValueError, struct.error) as e:
        raise WeightsError(f"{path}: not a readable caffemodel ({e}); download it again") from None
    table = bvlc_names()
    missing = [n for n in table if n not in layers]
    if len(missing) == len(table) or (missing and not set(missing) <= {n for n in table if n.startswith("loss")}):
        raise WeightsError(f"{path}: not Caffe's BVLC GoogLeNet: its layers are {list(layers)[:4]}..., missing "
                           f"{missing[:3]} (expected the names of models/bvlc_googlenet/train_val.prototxt)")
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    for caffe, ours in table.items():
        if caffe not in layers:
            continue  # a deploy model without the auxiliary heads
        blobs = layers[caffe]
        if len(blobs) != 2:
            raise WeightsError(f"{path}: layer {caffe} has {len(blobs)} blobs, expected weights and bias")
        w, b = (torch.from_numpy(x.copy()) for x in blobs)
        if ours.startswith(("fc", "aux1.fc", "aux2.fc")):
            w = w.reshape(w.shape[-2], w.shape[-1])  # V1 files store [1, 1, out, in]
        sd[f"{ours}.weight"], sd[f"{ours}.bias"] = w, b.reshape(-1)
    sd["conv1.conv.weight"] = sd["conv1.conv.weight"].flip(1).contiguous()  # BGR -> RGB input channels
    mean_rgb = [m / 255.0 for m in CAFFE_MEAN_BGR[::-1]]
    meta = {"variant": "paper", "norm": "lrn", "transform_input": False, "weights": "caffe",
            "input": {"colour": "RGB", "scale": 255.0, "mean": mean_rgb, "std": [1.0 / 255.0] * 3},
            "caffe_input": {"colour": "BGR", "range": [0, 255], "mean_bgr": list(CAFFE_MEAN_BGR),
                            "conv1": "input channels reordered BGR -> RGB when read"},
            "source": os.path.basename(path)}
    return sd, meta


def to_caffe_layers(sd: OrderedDict[str, torch.Tensor], v1: bool = False) -> OrderedDict[str, list[np.ndarray]]:
    """A ``paper``-layout state dict (with or without aux heads) as BVLC's layers: the inverse of
    :func:`read_bvlc_googlenet` (conv1 back to BGR; fully connected weights as V1's 4-D blobs when ``v1``)."""
    sd = OrderedDict((k.removeprefix("backbone."), v) for k, v in sd.items())
    out: OrderedDict[str, list[np.ndarray]] = OrderedDict()
    for caffe, ours in bvlc_names().items():
        if f"{ours}.weight" not in sd:
            continue
        w = sd[f"{ours}.weight"].detach().cpu()
        if caffe == "conv1/7x7_s2":
            w = w.flip(1)
        w = w.numpy()
        if v1 and w.ndim == 2:
            w = w.reshape(1, 1, *w.shape)
        out[caffe] = [w, sd[f"{ours}.bias"].detach().cpu().numpy()]
    return out
