"""ONNX Runtime measurement: finite positive medians, INT8 QDQ accuracy, resumable tables."""

import math

import numpy as np
import onnx
import pytest
import torch

from donna_nas.latency import LookupTable, OrtMeasurer, TableRow
from donna_nas.latency.ort import (INT8_REL_TOLERANCE, export_onnx, quantize_int8, randomize_bn,
                                   sample_input)
from donna_nas.nn.ops import make_layer
from donna_nas.space.ops import OpInstance

OPS = [OpInstance("stem", 3, 16, 3, 2, 32, 64, "relu"),
       OpInstance("ir", 16, 24, 5, 2, 16, 32, "hswish", 4, True),
       OpInstance("fused_ir", 24, 24, 3, 1, 8, 16, "swish", 2),
       OpInstance("gconv", 24, 32, 3, 2, 8, 16, "relu", 4)]


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.kind)
def test_measure_gives_positive_finite_median(op):
    m = OrtMeasurer(repeats=6, warmup=2, rounds=3)
    t = m.measure_op(op)
    assert t.runs == 6
    assert math.isfinite(t.median_ms) and t.median_ms > 0
    assert math.isfinite(t.std_ms) and t.std_ms >= 0


@pytest.mark.parametrize("op", OPS[1:], ids=lambda o: o.kind)
def test_int8_runs_and_matches_fp32(op):
    torch.manual_seed(0)
    module = randomize_bn(make_layer(op)).eval()
    shape = (1, op.cin, op.h, op.w)
    fp32 = export_onnx(module, shape)
    int8 = quantize_int8(fp32, shape, image=False)
    kinds = {n.op_type for n in onnx.load_from_string(int8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    m = OrtMeasurer("int8", repeats=2, warmup=1, rounds=1)
    x = sample_input(shape, False, 7)  # not one of the calibration samples
    y8 = m.session(int8).run(None, {"x": x})[0]
    y32 = m.session(fp32).run(None, {"x": x})[0]
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    assert np.allclose(y32, ref, atol=1e-4)
    rel = np.linalg.norm(y8 - y32) / np.linalg.norm(y32)
    assert rel < INT8_REL_TOLERANCE, rel


def test_measure_ops_resumes_and_keeps_rows(tmp_path):
    m = OrtMeasurer(repeats=2, warmup=1, rounds=1)
    out = tmp_path / "t.csv"
    kept = TableRow(OPS[0].key, 123.0, 0.0, m.device, "fp32", m.runtime, "earlier run")
    LookupTable([kept], out).to_csv(out)
    # a zero time budget still measures one batch (every run makes progress), then stops
    t = m.measure_ops(OPS, LookupTable.from_csv(out), out, progress=False, time_budget_s=0, batch=1)
    assert len(t) == 2
    t = m.measure_ops(OPS, LookupTable.from_csv(out), out, progress=False, batch=2)
    again = LookupTable.from_csv(out)
    assert set(again.keys()) == {op.key for op in OPS}
    assert again.lookup(OPS[0].key) == 123.0 and again.rows[OPS[0].key].source == "earlier run"


def test_measure_refuses_other_device_table(tmp_path):
    out = tmp_path / "t.csv"
    LookupTable([TableRow("x", 1.0, 0.0, "Pixel 7", "fp32", "tflite", "s")], out).to_csv(out)
    with pytest.raises(Exception, match="Pixel 7"):
        OrtMeasurer(repeats=1).measure_ops(OPS[:1], LookupTable.from_csv(out), out, progress=False)


def test_cpu_clock_needs_one_thread():
    from donna_nas.errors import UserError

    assert OrtMeasurer(threads=1).clock == "cpu"
    assert OrtMeasurer(threads=2).clock == "wall"
    with pytest.raises(UserError, match="clock"):
        OrtMeasurer(threads=2, clock="cpu")
    with pytest.raises(UserError, match="fp32 or int8"):
        OrtMeasurer("fp16")
