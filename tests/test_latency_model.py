"""Op latency model: key round trip, exact recovery of a known linear cost, gap filling."""


import numpy as np
import pytest

from donna_nas import load_space
from donna_nas.errors import UserError
from donna_nas.latency import LookupTable, TableRow
from donna_nas.latency.model import (FEATURES, ModelledLatency, OpLatencyModel, _SCALE,
                                     fit_from_table, op_features, op_from_key)
from donna_nas.space.ops import unique_ops


def _ops(n_archs=40, space="donna_depth", size=(96, 320)):
    sp = load_space(space)
    return sp, unique_ops(sp, [sp.sample(i) for i in range(n_archs)], size)


@pytest.mark.parametrize("space", ["donna_depth", "tiny"])
def test_key_round_trip(space):
    _, ops = _ops(20, space)
    for op in ops:
        assert op_from_key(op.key) == op
        assert op_from_key(op.key).key == op.key


def test_bad_key_is_a_user_error():
    with pytest.raises(UserError, match="bad field|missing"):
        op_from_key("ir:cin=8,cout=16")


def test_model_recovers_a_known_non_negative_cost():
    _, ops = _ops()
    rng = np.random.default_rng(0)
    true = {k: rng.uniform(0.01, 1.0, len(FEATURES)) for k in ("stem", "ir", "fused_ir", "gconv")}
    lat = [float(op_features(o) * _SCALE @ true[o.kind]) for o in ops]
    model = OpLatencyModel.fit(ops, lat)
    pred = np.array([model.predict(o) for o in ops])
    # kinds with enough rows get their own exact model; the pooled fallback is approximate
    own = np.array([len([p for p in ops if p.kind == o.kind]) >= 3 * len(FEATURES) for o in ops])
    assert own.sum() > len(ops) // 2
    np.testing.assert_allclose(pred[own], np.array(lat)[own], rtol=1e-4)


def test_modelled_latency_keeps_measured_rows_and_fills_gaps(tmp_path):
    sp, ops = _ops()
    lat = {o.key: 0.01 + 1e-8 * o.macs for o in ops}
    measured = ops[: len(ops) // 2]
    table = LookupTable([TableRow(o.key, lat[o.key], 0.0, "cpu", "fp32", "ort", "test")
                         for o in measured])
    src = ModelledLatency(table)
    got = src.op_latencies(ops)
    for o, v in zip(ops, got):
        if o.key in table:
            assert v == lat[o.key]
        assert v > 0
    arch = sp.sample(123)
    assert src.arch_latency(sp, arch, (96, 320)) == pytest.approx(
        sum(src.op_latencies(sp.ops(arch, (96, 320)))))


def test_json_round_trip(tmp_path):
    _, ops = _ops(10)
    model = OpLatencyModel.fit(ops, [0.1 + 1e-9 * o.macs for o in ops], "cpu", "fp32")
    model.save(tmp_path / "m.json")
    again = OpLatencyModel.load(tmp_path / "m.json")
    assert again == model
    assert [again.predict(o) for o in ops] == [model.predict(o) for o in ops]


def test_too_small_table_is_refused():
    _, ops = _ops(1)
    table = LookupTable([TableRow(o.key, 1.0, 0.0, "cpu", "fp32", "ort", "t") for o in ops[:3]])
    with pytest.raises(UserError, match="too few"):
        fit_from_table(table)


def test_search_measure_ort_uses_the_filled_in_model(tmp_path):
    """`search --measure ort` times a few archs' ops, fits the model and runs the exact solver."""
    import json
    import subprocess
    import sys

    from donna_nas.latency.model import ModelledLatency
    from donna_nas.search import synthetic_predictor

    space = load_space("tiny")
    (tmp_path / "space.yaml").write_text(space.to_yaml())
    synthetic_predictor(space, 3).save(tmp_path / "predictor.json")
    r = subprocess.run([sys.executable, "-m", "donna_nas", "search", str(tmp_path), "--measure", "ort",
                        "--measure-archs", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "exact solver was used" in r.stdout
    table = LookupTable.from_csv(tmp_path / "tables" / "latency_ort_fp32.csv")
    ops3 = unique_ops(space, [space.sample(i) for i in range(3)], space.input_size)
    assert {o.key for o in ops3} <= set(table.keys())
    selected = json.loads((tmp_path / "selected.json").read_text())
    arch = space.decode(selected["arch"])
    model = OpLatencyModel.load(tmp_path / "tables" / "latency_model_fp32.json")
    expected = ModelledLatency(table, model).arch_latency(space, arch)
    assert selected["latency_ms"] == pytest.approx(expected, rel=1e-6)
