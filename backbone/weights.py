"""Loading GoogLeNet weights from local files, strictly, with errors that say what is wrong: our
exports and checkpoints, torchvision's published ``googlenet-1378be20.pth`` and Caffe's
``bvlc_googlenet.caffemodel`` (``caffe.py``; nothing is downloaded)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from core.errors import UserError

from .aux import GoogLeNetWithAux


class WeightsError(UserError, ValueError):
    """A weights file that cannot be loaded into the model; the message names the file and the fix."""


# The one file whose provenance requires transform_input (spec §1, "Known departures").
_TORCHVISION_PUBLISHED = "googlenet-1378be20"


def read_weights(path: str | os.PathLike) -> tuple[OrderedDict[str, Tensor], dict]:
    """The state dict in ``path`` (a plain ``{key: tensor}`` file, or a checkpoint or export holding
    one under ``"model"``/``"state_dict"``) and the ``meta`` an export of
    ``tools/pretrain_backbone.py`` carries (``{}`` for other files; a ``.caffemodel`` is read by
    :func:`backbone.caffe.read_bvlc_googlenet`, with its own). Anything else is a
    :class:`WeightsError`."""
    path = os.fspath(path)
    if path.lower().endswith(".caffemodel"):  # Caffe's BVLC GoogLeNet (caffe.py)
        from .caffe import read_bvlc_googlenet

        return read_bvlc_googlenet(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, truncated zip files, text files ...
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:120] if str(e) else 'no detail'})") from None
    meta = dict(obj["meta"]) if isinstance(obj, Mapping) and isinstance(obj.get("meta"), Mapping) else {}
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state dict (expected a mapping of parameter names to tensors, "
                           f"got {type(obj).__name__})")
    return OrderedDict((k.removeprefix("module."), v) for k, v in obj.items()), meta


def read_state_dict(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """The state dict in ``path`` (see :func:`read_weights`)."""
    return read_weights(path)[0]


def load_weights(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor],
                 name: str | None = None) -> nn.Module:
    """Load GoogLeNet weights (a file, or a state dict read from the file ``name``) strictly, with
    errors that say what is wrong.

    Into a ``GoogLeNet``, a file with auxiliary heads (``aux1.*``, ``aux2.*``, as torchvision's)
    loads with those heads dropped; every other missing or unexpected key, and every shape
    mismatch, is a :class:`WeightsError` naming the file, the keys and the likely cause.
    """
    name = name or (os.fspath(source) if not isinstance(source, Mapping) else "<state dict>")
    sd = read_state_dict(source) if not isinstance(source, Mapping) else OrderedDict(source)
    backbone = model.backbone if isinstance(model, GoogLeNetWithAux) else model
    if not hasattr(backbone, "feature_info") or not hasattr(backbone, "transform_input"):  # a GoogLeNet
        raise TypeError(f"load_weights takes a GoogLeNet or GoogLeNetWithAux, got {type(model).__name__}")
    if _TORCHVISION_PUBLISHED in os.path.basename(name) and not backbone.transform_input:
        raise WeightsError(f"{name}: torchvision's published weights expect [-1, 1] input: build with "
                           "googlenet(variant='torchvision', transform_input=True)")
    # One flat key space: torchvision's (``conv1.*``, ``aux1.*``); the wrapper nests its backbone.
    sd = OrderedDict((k.removeprefix("backbone."), v) for k, v in sd.items())
    if not isinstance(model, GoogLeNetWithAux):
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(("aux1.", "aux2.")))
    own = OrderedDict((k.removeprefix("backbone."), v) for k, v in model.state_dict().items())
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if len(missing) > len(own) // 2:  # another network altogether (a ResNet shares only fc.*)
        raise WeightsError(f"{name}: not GoogLeNet weights: {len(own) - len(missing)} of the {len(own)} expected "
                           f"keys are present (the file has e.g. {list(sd)[:3]})")
    if missing or unexpected:
        hint = ""
        if any(k.startswith(("aux1.", "aux2.")) for k in missing):
            hint = "; the file has no auxiliary heads: load it into the backbone (aux=False)"
        elif any(".bn." in k for k in missing) or any(".bn." in k for k in unexpected):
            hint = f"; BatchNorm keys differ: the model is norm={backbone.norm!r}, check the file's norm"
        raise WeightsError(f"{name}: {len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected "
                           f"key(s) {unexpected[:3]}{hint}")
    for k, v in own.items():
        if v.shape != sd[k].shape:
            hint = ""
            if k.endswith("fc.weight") or k.endswith("fc.bias") or k.endswith("fc2.weight"):
                hint = f"; the file has a different number of classes than num_classes={backbone.num_classes}"
            elif ".branch3.1." in k:
                hint = (f"; the 5x5 branch differs: the model is variant={backbone.variant!r}, the file is the other "
                        "layout")
            raise WeightsError(f"{name}: shape of {k} is {tuple(sd[k].shape)} in the file, "
                               f"{tuple(v.shape)} in the model{hint}")
    if isinstance(model, GoogLeNetWithAux):
        sd = OrderedDict((k if k.startswith(("aux1.", "aux2.")) else f"backbone.{k}", v) for k, v in sd.items())
    model.load_state_dict(sd, strict=True)
    return model
