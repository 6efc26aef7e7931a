"""tools/selfcheck.py (make check) on the CPU at its small size, and the AMP modes behind it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from core.config import ConfigError
from core.runtime import amp_dtype, amp_for, amp_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from checks.common import LOSS_RTOL, Row, compare, guarded  # noqa: E402


def test_selfcheck_runs_every_stage_in_fp32_and_bf16_and_all_agree_with_the_cpu(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "selfcheck.py"), "--json",
                          str(tmp_path / "rows.json")], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    stages = {(r["stage"], r["dtype"]) for r in rows}
    for stage in ("pretrain step, aux heads", "detector train step, c4", "detector train step, fpn",
                  "evaluation batch", "ensemble of 2, shared"):
        assert {(stage, "fp32"), (stage, "bf16")} <= stages, stage
    assert ("TorchScript export parity", "fp32") in stages and ("DDP step, 2 processes vs 1", "fp32") in stages
    assert all(r["ok"] for r in rows)
    bf16 = [r for r in rows if r["dtype"] == "bf16"]
    assert all("diff" in r["detail"] for r in bf16)  # each compared with the CPU, not only run
    assert "12 of 12 rows ok" in out.stdout and "images/s" in out.stdout


def test_a_row_fails_past_its_tolerance_on_nan_and_on_an_exception():
    assert compare(Row("s", "bf16"), "loss rel. diff", 0.01, LOSS_RTOL["bf16"]).ok
    assert not compare(Row("s", "fp32"), "loss rel. diff", 0.01, LOSS_RTOL["fp32"]).ok
    assert not compare(Row("s", "fp32"), "loss rel. diff", float("nan"), 1.0).ok

    def boom(row):
        raise RuntimeError("CUDA error: an illegal memory access")
    row = guarded(Row("s", "fp32"), boom)
    assert not row.ok and "illegal memory access" in row.detail


def test_amp_modes_are_one_autocast_path_for_cpu_and_cuda():
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, "auto") is None and amp_dtype(cpu, True) is None  # fp32 on the CPU unless asked
    assert amp_dtype(cpu, "off") is None and amp_dtype(cpu, False) is None  # YAML's bare `off`
    assert amp_dtype(cpu, "bf16") == torch.bfloat16 and amp_name(cpu, "bf16") == "bf16"
    autocast, scaler = amp_for(cpu, "fp16")
    assert scaler is not None  # fp16 scales its gradients; bf16 has fp32's range and needs none
    with autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float16
    assert amp_for(cpu, "bf16")[1] is None
    with pytest.raises(ConfigError, match="amp must be"):
        amp_dtype(cpu, "fp8")


@pytest.mark.parametrize("head", ["c4", "fpn"])
def test_bf16_boxes_keep_fp32_precision(head):
    """Under autocast the heads hand torchvision fp32 deltas: decoded boxes are fp32, not rounded
    to bf16's 8 bits (steps of 2 px at 300-500 px)."""
    from detector.model import googlenet_faster_rcnn

    torch.manual_seed(0)
    model = googlenet_faster_rcnn(3, head=head, rpn_post_nms_top_n_test=16, box_score_thresh=0.0).eval()
    images = [torch.rand(3, 96, 128)]
    with torch.inference_mode():
        ref = model(images)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(images)[0]
    assert got["boxes"].dtype == torch.float32 and got["scores"].dtype == torch.float32
    assert len(got["boxes"]) > 0 and torch.isfinite(got["boxes"]).all()
    on_grid = got["boxes"].to(torch.bfloat16).float()
    assert (got["boxes"] - on_grid).abs().max() > 0  # not rounded to bf16's coarse grid
    assert got["scores"][0] == pytest.approx(ref["scores"][0].item(), abs=0.02)
