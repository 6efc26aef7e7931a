"""VOC-format data sets of their own classes: the class list from ``data.classes`` or, without it,
from the annotations (sorted, said in the log); Pascal VOC itself keeps its 20."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from core.config import ConfigError
from detector.data.build import DetDataConfig, build_detection_index
from detector.data.voc import VOC_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RACCOON = os.path.join(os.path.dirname(ROOT), "shared", "data", "raccoon")
needs_raccoon = pytest.mark.skipif(not os.path.isdir(RACCOON), reason="no ../shared/data/raccoon beside the checkout")


def voc(tmp_path, names: dict[str, list[str]], split: str = "train") -> str:
    """A VOC-layout folder: one annotation per image id with objects of ``names``."""
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(tmp_path / d, exist_ok=True)
    for image_id, objects in names.items():
        body = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
                       "<xmax>20</xmax><ymax>30</ymax></bndbox></object>" for n in objects)
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>64</width><height>48</height><depth>3</depth></size>{body}</annotation>")
    (tmp_path / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return str(tmp_path)


@needs_raccoon
def test_raccoon_takes_its_one_class_from_its_annotations_and_keeps_every_box(capsys):
    cfg = DetDataConfig(format="voc", root=RACCOON, train_split="train", val_split="val")
    train, _ = build_detection_index(cfg, train=True)
    val, _ = build_detection_index(cfg, train=False)
    assert train.classes == val.classes == ["raccoon"] and train.class_names == ["raccoon"]
    assert (len(train.records), len(val.records)) == (160, 40)
    assert sum(len(r.boxes) for r in train.records + val.records) == 217  # every box, as the data's README counts
    assert all((r.labels == 1).all() for r in train.records + val.records)
    assert not [f for f in train.report.items + val.report.items if "unknown" in f.kind]
    said = capsys.readouterr().err
    assert "1 class(es) from the annotations" in said and "raccoon" in said and "data.classes" in said


def test_the_class_list_is_sorted_from_every_split_and_data_classes_overrides_it(tmp_path):
    root = voc(tmp_path, {"a": ["zebra", "ant"], "b": ["mole"]})
    voc(tmp_path, {"c": ["yak"]}, split="val")
    cfg = DetDataConfig(format="voc", root=root, train_split="train", val_split="val")
    train, _ = build_detection_index(cfg, train=True)
    assert train.classes == ["ant", "mole", "yak", "zebra"]  # val's yak too: train and val share the labels
    assert [list(r.labels) for r in train.records] == [[4, 1], [2]]
    chosen = DetDataConfig(format="voc", root=root, train_split="train", val_split="val", classes=["zebra", "mole"])
    train, _ = build_detection_index(chosen, train=True)
    assert train.classes == ["zebra", "mole"] and [list(r.labels) for r in train.records] == [[1], [2]]
    assert any("'ant'" in f.detail for f in train.report.items)  # an object of no listed class is reported


def test_pascal_voc_names_keep_the_20_classes_and_other_formats_refuse_data_classes(tmp_path, capsys):
    root = voc(tmp_path, {"a": ["dog", "cat"], "b": ["person"]})
    train, _ = build_detection_index(DetDataConfig(format="voc", root=root, train_split="train", val_split="train"),
                                     train=True)
    assert train.classes == list(VOC_CLASSES) and [list(r.labels) for r in train.records] == [[12, 8], [15]]
    typo = voc(tmp_path / "typo", {"a": ["dog", "dragon"]})  # a name beside VOC's: its own class, pointed out
    train, _ = build_detection_index(DetDataConfig(format="voc", root=typo, train_split="train", val_split="train"),
                                     train=True)
    assert train.classes == ["dog", "dragon"] and "not among Pascal VOC's 20: dragon" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="data.classes"):
        build_detection_index(DetDataConfig(format="coco", root=str(tmp_path), classes=["dog"]), train=True)


@needs_raccoon
def test_train_det_trains_on_raccoon_with_only_the_data_overrides(tmp_path):
    args = [os.path.join(ROOT, "tools", "train_det.py"), "configs/toy_det.yaml", "data.format=voc",
            f"data.root={RACCOON}", "data.train_split=train", "data.val_split=val", "data.toy=false",
            f"work_dir={tmp_path}", "model.weights=null", "data.workers=0", "data.scales=[96]", "data.test_scale=96",
            "data.max_size=160", "batch_size=2", "max_steps=2", "progress=false", "model.rpn_post_nms_top_n_test=16"]
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-2000:]
    (final,) = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs if f == "model_final.pth"]
    saved = torch.load(final, map_location="cpu", weights_only=True)
    assert saved["class_names"] == ["raccoon"] and "1 class(es) from the annotations" in out.stderr
    assert "objects of unknown classes" not in out.stderr + out.stdout
