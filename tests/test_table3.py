"""The paper's Table 3 on the miniature: three pretraining members (model_index 0, 1, 2) scored
alone and as an ensemble with 1, 10 and 144 crops (tools/pretrain_backbone.py --eval-only)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from test_pretrain_run import run_tool

from backbone.pretrain.table3 import table_rows
from core.miniature import make_toy_imagenet

VAL_PER_CLASS = 15  # 60 validation images: 3 members x (1 + 10 + 144) crops of each in the rows test


def member_args(toy: str, work: str, k: int) -> list[str]:
    """The demo's recipe (BN layout, EMA), smaller: 40 px crops, 4 epochs of 320 images (4 classes)."""
    return ["configs/pretrain_toy.yaml", f"data.root={toy}", "data.toy=false", f"work_dir={work}", "name=m",
            f"model_index={k}", "data.crop=40", "data.resize=48", "data.scales=[48, 52, 56, 60]",
            "data.workers=0", "batch_size=16", "epochs=4", "eval_every=4", "progress=false"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    toy = make_toy_imagenet(tmp_path_factory.mktemp("data") / "toy", n_train=80, n_val=VAL_PER_CLASS, size=48,
                            num_classes=4, seed=0)
    work = str(tmp_path_factory.mktemp("members"))
    for k in range(3):
        run_tool(member_args(toy, work, k))
    dirs = [os.path.join(work, "m" if k == 0 else f"m_m{k}") for k in range(3)]
    return toy, work, [os.path.join(d, "backbone.pth") for d in dirs]


def test_members_differ_by_model_index(members):
    _, _, paths = members
    fc = [torch.load(p, weights_only=True)["state_dict"]["fc.weight"] for p in paths]
    assert not torch.equal(fc[0], fc[1]) and not torch.equal(fc[1], fc[2])  # own seed, own data order


def test_table3_rows_on_three_members(members):
    """Every row of Table 3 (each model and the ensemble at 1, 10 and 144 crops, with its cost),
    and the ensemble no worse than its worst member at each crop count. Which crop count wins is
    not asserted: on this miniature the errors are the shapes', not the views', so the crops gain
    or lose an image or two, and the order is the CPU's rounding to decide (an earlier version of
    this test that asserted it failed on another CPU; the crops themselves are tested in
    test_pretrain_parts.py). Measured (top-1 error on 60 images, 4 classes, AMD EPYC): members
    47-62%, the ensemble 47-48%, each within 10 points across crop counts; on 100 images (Intel
    Xeon) members 54-66%, the ensemble 58-61%."""
    toy, work, paths = members
    out = str(os.path.join(work, "table3.json"))
    run_tool(member_args(toy, work, 0) + ["--eval-only", *paths, "--crops", "1", "10", "144", "--out", out])
    with open(out) as f:
        table = json.load(f)
    assert table["images"] == 4 * VAL_PER_CLASS and len(table["rows"]) == 12
    rows = {(r["model"], r["crops"]): r for r in table["rows"]}
    ens = [rows[("ensemble of 3", c)] for c in (1, 10, 144)]
    assert [r["cost"] for r in ens] == [3, 30, 432]
    assert [r["cost"] for r in table["rows"] if r["models"] == 1] == [1, 10, 144] * 3
    for c, e in zip((1, 10, 144), ens):
        worst = max(r["top1_error"] for r in table["rows"] if r["models"] == 1 and r["crops"] == c)
        assert 0 <= e["top1_error"] <= worst, (c, e)
    print("\n" + json.dumps([(r["model"], r["crops"], round(r["top1_error"], 1), round(r["top5_error"], 1))
                             for r in table["rows"]]))


def test_an_ensemble_of_one_model_repeated_is_that_model(members):
    toy, work, paths = members
    out = str(os.path.join(work, "same.json"))
    run_tool(member_args(toy, work, 0) + ["--eval-only", paths[1], paths[1], "--crops", "10", "--out", out])
    with open(out) as f:
        rows = json.load(f)["rows"]
    assert rows[0]["top1_error"] == rows[2]["top1_error"] and rows[0]["top5_error"] == rows[2]["top5_error"]


def test_torchrun_shares_the_images_out_and_agrees(members):
    toy, work, paths = members
    one, two = (str(os.path.join(work, f"{n}.json")) for n in ("one", "two"))
    args = member_args(toy, work, 0) + ["device=cpu", "--eval-only", paths[0], paths[2], "--crops", "1", "10"]
    run_tool(args + ["--out", one])
    run_tool(args + ["--out", two], torchrun=2)
    with open(one) as f, open(two) as g:
        a, b = json.load(f), json.load(g)
    assert a["images"] == b["images"] == 4 * VAL_PER_CLASS
    for ra, rb in zip(a["rows"], b["rows"]):
        for key in ("top1_error", "top5_error"):
            assert ra[key] == pytest.approx(rb[key]), (ra, rb)


def test_table_rows_arithmetic():
    correct = torch.tensor([[[80.0, 95.0]], [[70.0, 90.0]], [[85.0, 99.0]]])  # 2 models + ensemble, 1 crop count
    rows = table_rows(["a.pth", "b.pth"], [10], correct, 100)
    assert [(r["model"], r["cost"], r["top1_error"], r["top5_error"]) for r in rows] == [
        ("a.pth", 10, 20.0, 5.0), ("b.pth", 10, 30.0, 10.0), ("ensemble of 2", 20, 15.0, 1.0)]
    assert rows[2]["top5_vs_base"] == pytest.approx(-4.0)
