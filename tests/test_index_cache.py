"""The parsed ILSVRC index kept on disk: read back equal, with its parse report, without parsing any
XML; parsed again whenever a file it came from changes."""

from __future__ import annotations

import os
import shutil

import pytest

from detector.data import ilsvrc
from detector.data.ilsvrc import ILSVRCDet
from detector.data.toy import make_toy_ilsvrc


@pytest.fixture()
def split(tmp_path_factory, tmp_path):
    """A miniature with a broken annotation, a box crossing the border and a val image without XML
    (so the report has findings to keep), copied per test since tests change its files."""
    base = tmp_path_factory.getbasetemp() / "index_cache_src"
    if not base.exists():
        make_toy_ilsvrc(str(base), n_train=6, n_val=10, n_negative=2, cls_per_class=1)
        ann = base / "Annotations" / "DET" / "val"
        (ann / "toy_val_000001.xml").write_text("<annotation><size>")
        text = (ann / "toy_val_000002.xml").read_text()
        start = text.index("<xmax>") + len("<xmax>")
        (ann / "toy_val_000002.xml").write_text(text[:start] + "9999" + text[text.index("</xmax>"):])
        os.remove(ann / "toy_val_000003.xml")
    root = tmp_path / "ilsvrc"
    shutil.copytree(base, root)
    return str(root), str(root / "map_det.txt"), str(root / "det_validation_blacklist.txt")


def read(root, synsets, blacklist, cache, split="val"):
    return ILSVRCDet(root, split, synsets=synsets, blacklist=blacklist, cache=cache)


def same(a: ILSVRCDet, b: ILSVRCDet) -> None:
    assert len(a.records) == len(b.records) > 0
    for x, y in zip(a.records, b.records):
        assert (x.path, x.image_id, x.width, x.height, x.source, x.index, x.ignore_classes) == \
            (y.path, y.image_id, y.width, y.height, y.source, y.index, y.ignore_classes)
        assert x.boxes.tolist() == y.boxes.tolist() and x.boxes.dtype == y.boxes.dtype
        assert x.labels.tolist() == y.labels.tolist() and x.ignore.tolist() == y.ignore.tolist()
    assert a.report.items == b.report.items


def test_a_second_read_parses_no_xml_and_equals_the_first(split, tmp_path, monkeypatch):
    root, synsets, blacklist = split
    cache = str(tmp_path / "cache")
    first = read(root, synsets, blacklist, cache)
    assert len(os.listdir(cache)) == 1
    assert any("crosses the border" in f.detail for f in first.report.items)
    assert any(f.kind == "unreadable annotations" for f in first.report.items)
    assert any(r.ignore_classes for r in first.records)  # the blacklist survives the round trip

    def no_parsing(*a, **k):
        raise AssertionError("parsed XML although the cache is valid")

    monkeypatch.setattr(ilsvrc, "parse_xml", no_parsing)
    same(first, read(root, synsets, blacklist, cache))
    # the uncached read gives the same index
    monkeypatch.undo()
    same(first, read(root, synsets, blacklist, None))


@pytest.mark.parametrize("change", ["edit a box", "delete an annotation", "fix the broken one", "edit the list",
                                    "edit the blacklist"])
def test_any_change_to_the_files_it_came_from_parses_again(split, tmp_path, change):
    root, synsets, blacklist = split
    cache = str(tmp_path / "cache")
    read(root, synsets, blacklist, cache)
    ann = os.path.join(root, "Annotations", "DET", "val")
    if change == "edit a box":
        path = os.path.join(ann, "toy_val_000005.xml")
        text = open(path).read()
        start = text.index("<xmin>") + len("<xmin>")
        with open(path, "w") as f:
            f.write(text[:start] + "0" + text[text.index("</xmin>"):])
    elif change == "delete an annotation":
        os.remove(os.path.join(ann, "toy_val_000006.xml"))
    elif change == "fix the broken one":
        shutil.copy(os.path.join(ann, "toy_val_000004.xml"), os.path.join(ann, "toy_val_000001.xml"))
    elif change == "edit the list":
        listing = os.path.join(root, "ImageSets", "DET", "val.txt")
        lines = open(listing).read().splitlines()
        with open(listing, "w") as f:
            f.write("\n".join(lines[:-1]) + "\n")
    else:
        with open(blacklist, "a") as f:
            f.write("5 n90000002\n")
    cached = read(root, synsets, blacklist, cache)
    same(read(root, synsets, blacklist, None), cached)
    if change == "edit a box":
        (edited,) = [r for r in cached.records if r.image_id == "toy_val_000005"]
        assert edited.boxes[:, 0].min() == 0


def test_an_unwritable_or_damaged_cache_is_parsed_around(split, tmp_path):
    root, synsets, blacklist = split
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache folder would be")
    same(read(root, synsets, blacklist, None), read(root, synsets, blacklist, str(blocked / "cache")))
    cache = str(tmp_path / "cache")
    read(root, synsets, blacklist, cache)
    (entry,) = os.listdir(cache)
    with open(os.path.join(cache, entry), "wb") as f:
        f.write(b"not an npz")
    same(read(root, synsets, blacklist, None), read(root, synsets, blacklist, cache))


def test_the_cache_is_keyed_by_split_and_synsets(split, tmp_path):
    root, synsets, blacklist = split
    cache = str(tmp_path / "cache")
    val = read(root, synsets, blacklist, cache)
    train = ILSVRCDet(root, "train", synsets=synsets, negatives=1.0, cache=cache)
    assert len(os.listdir(cache)) == 2
    assert {r.image_id for r in val.records}.isdisjoint({r.image_id for r in train.records})
    again = ILSVRCDet(root, "train", synsets=synsets, negatives=0.0, cache=cache)
    assert len(again.records) < len(train.records) and len(os.listdir(cache)) == 3
    same(ILSVRCDet(root, "train", synsets=synsets, negatives=0.0), again)
