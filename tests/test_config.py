from __future__ import annotations

import pytest

from backbone.pretrain.config import PretrainConfig
from core.config import ConfigError, load_config


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_file_and_dotted_overrides_are_typed(tmp_path):
    p = write(tmp_path, "epochs: 3\ndata:\n  root: /x\n  scales: [1, 2, 3, 4]\noptim:\n  lr: 1\n")
    cfg = load_config(PretrainConfig, p, ["optim.lr=0.5", "data.workers=0", "averaging=none", "model.norm=bn",
                                          "name=run 2"])
    assert cfg.epochs == 3 and cfg.data.root == "/x" and cfg.data.scales == [1, 2, 3, 4]
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert cfg.data.workers == 0 and cfg.averaging == "none" and cfg.model.norm == "bn" and cfg.name == "run 2"
    assert cfg.optim.momentum == 0.9  # defaults kept
    assert load_config(PretrainConfig, p, ["optim.lr=1"]).optim.lr == 1.0  # int accepted for float
    assert load_config(PretrainConfig, p, ["optim.lr=1e-3"]).optim.lr == 0.001  # YAML 1.1 reads 1e-3 as a string
    assert load_config(PretrainConfig, write(tmp_path, "optim:\n  weight_decay: 2e-4\n")).optim.weight_decay == 2e-4


@pytest.mark.parametrize("text,overrides,match", [
    ("epoch: 3\n", [], r"c.yaml: unknown key epoch \(known keys of the config: name, work_dir"),
    ("optim:\n  lrr: 3\n", [], r"unknown key optim.lrr"),
    ("epochs: three\n", [], r"epochs must be an integer, got 'three'"),
    ("epochs: 2.5\n", [], r"epochs must be an integer"),
    ("model:\n  variant: resnet\n", [], r"model.variant must be one of 'paper', 'torchvision'"),
    ("data: 3\n", [], r"data must be a mapping"),
    ("", ["optim.lr=fast"], r"optim.lr must be a number, got 'fast'"),
    ("", ["optim.lrr=1"], r"override optim.lrr=1\): unknown key optim.lrr"),
    ("", ["epochs.x=1"], r"epochs is a value, not a section"),
    ("", ["epochs"], r"write overrides as key=value"),
    ("", ["progress=yes please"], r"progress must be true or false"),
    ("epochs: [1\n", [], r"not valid YAML at line"),
    ("- 1\n- 2\n", [], r"top level must be a mapping"),
])
def test_errors_name_the_file_and_key(tmp_path, text, overrides, match):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as e:
        load_config(PretrainConfig, p, overrides)
    assert "\n" not in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")


def test_shipped_configs_load():
    for path in ("configs/pretrain_imagenet.yaml", "configs/pretrain_toy.yaml"):
        cfg = load_config(PretrainConfig, path)
        assert cfg.epochs > 0
    from detector.config import DetConfig

    for path in ("configs/ilsvrc_det.yaml", "configs/ilsvrc_det_2014.yaml", "configs/coco_det.yaml",
                 "configs/toy_det.yaml"):
        assert load_config(DetConfig, path).epochs > 0
    entry = load_config(DetConfig, "configs/ilsvrc_det_2014.yaml")
    # the entry: C4, no box regression, Selective Search + 200 learned boxes, about 60% of R-CNN's 2,000
    assert (entry.model.head, entry.model.bbox_reg, entry.model.proposals) == ("c4", False, "both")
    assert entry.data.max_proposals + entry.model.rpn_post_nms_top_n_test == 1200
    assert "{split}" in entry.data.proposals
