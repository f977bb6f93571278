"""Latency tables: validation errors, lookups, sums over op instances, the cache."""

import csv
import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donna_nas.errors import UserError
from donna_nas.latency import CachedMeasurer, LookupTable, MissingKeysError, OrtMeasurer, TableRow
from donna_nas.space.ops import all_ops, unique_ops
from donna_nas.space import load_space

HEADER = ["op", "latency_ms", "std_ms", "device", "precision", "runtime", "source"]


def write(path, rows, header=HEADER):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def row(op, ms, device="phone", precision="fp32", std="0.1"):
    return [op, ms, std, device, precision, "tflite", "test"]


def fake_ms(key: str) -> float:
    """A deterministic, key-dependent positive latency."""
    return 0.05 + int(hashlib.sha1(key.encode()).hexdigest()[:6], 16) / 2**24


def test_valid_table_loads(tmp_path):
    t = LookupTable.from_csv(write(tmp_path / "t.csv", [row("a", "1.5"), row("b", "2"),
                                                        row("a", "1.5")]))
    assert sorted(t.keys()) == ["a", "b"]
    assert "a" in t and "c" not in t
    assert t.lookup("b") == 2.0
    assert t.device == "phone" and t.precision == "fp32"
    assert t.latency_of(["a", "b", "a"]) == pytest.approx(5.0)


def test_missing_columns(tmp_path):
    p = write(tmp_path / "t.csv", [["a", "1"]], header=["op", "latency_ms"])
    with pytest.raises(UserError, match=r"missing column\(s\) \['std_ms', 'device'"):
        LookupTable.from_csv(p)


@pytest.mark.parametrize("value,why", [("nan", "NaN"), ("-1", "negative"), ("0", "zero"),
                                       ("abc", "not a number"), ("inf", "NaN or infinite")])
def test_bad_values_name_rows(tmp_path, value, why):
    p = write(tmp_path / "t.csv", [row("a", "1"), row("b", value), row("c", "2")])
    with pytest.raises(UserError, match=rf"{why}.*rows 3\)"):
        LookupTable.from_csv(p)


def test_all_bad_rows_in_one_error(tmp_path):
    p = write(tmp_path / "t.csv", [row("a", "nan"), row("b", "1"), row("c", "-2"), row("d", "nan")])
    with pytest.raises(UserError) as e:
        LookupTable.from_csv(p)
    msg = str(e.value)
    assert "rows 2, 5" in msg and "negative (rows 4)" in msg and "\n" not in msg


def test_duplicate_keys_with_different_values(tmp_path):
    p = write(tmp_path / "t.csv", [row("a", "1"), row("b", "2"), row("a", "1.1")])
    with pytest.raises(UserError, match=r"duplicate op keys.*'a' \(rows 2 and 4\)"):
        LookupTable.from_csv(p)


@pytest.mark.parametrize("col,kw", [("devices", {"device": "other"}),
                                    ("precisions", {"precision": "int8"})])
def test_mixed_devices_or_precisions(tmp_path, col, kw):
    p = write(tmp_path / "t.csv", [row("a", "1"), row("b", "2", **kw)])
    with pytest.raises(UserError, match=rf"mixed {col}.*row 3"):
        LookupTable.from_csv(p)


def test_unknown_precision_and_empty(tmp_path):
    with pytest.raises(UserError, match="precision must be one of"):
        LookupTable.from_csv(write(tmp_path / "a.csv", [row("a", "1", precision="fp8")]))
    with pytest.raises(UserError, match="no rows"):
        LookupTable.from_csv(write(tmp_path / "b.csv", []))
    with pytest.raises(UserError, match="not found"):
        LookupTable.from_csv(tmp_path / "nope.csv")


def test_missing_keys_error_lists_keys_and_command(tmp_path):
    t = LookupTable.from_csv(write(tmp_path / "t.csv", [row("a", "1")]))
    with pytest.raises(MissingKeysError) as e:
        t.latency_of(["a", "k1", "k2", "k3", "k4", "k5", "k1"])
    assert isinstance(e.value, UserError)
    assert e.value.missing == ["k1", "k2", "k3", "k4", "k5"]
    msg = str(e.value)
    assert "5 op key(s) missing" in msg and "k1, k2, k3 (+2 more)" in msg
    assert f"donna-nas latency measure --space SPACE --size HxW --precision fp32 --out {tmp_path}" in msg


@pytest.mark.parametrize("precision", ["unknown", "fp16"])
def test_missing_keys_of_a_table_this_cpu_cannot_extend_point_to_its_device(tmp_path, precision):
    t = LookupTable.from_csv(write(tmp_path / "t.csv", [row("a", "1", precision=precision)]))
    with pytest.raises(MissingKeysError) as e:
        t.latency_of(["a", "k1"])
    msg = str(e.value)
    assert "latency measure" not in msg and f"precision {precision}" in msg and "export-blocks" in msg


def test_arch_latency_missing_names_space_and_size(tmp_path):
    space = load_space("tiny")
    t = LookupTable([TableRow("x", 1, 0, "d", "fp32", "r", "s")])
    with pytest.raises(MissingKeysError, match=r"--space .*tiny.yaml --size 64x192"):
        t.arch_latency(space, space.sample(0), (64, 192))


def synthetic_table(space, size):
    return LookupTable([TableRow(op.key, fake_ms(op.key), 0.0, "d", "fp32", "r", "s")
                        for op in all_ops(space, size)])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_sum_of_ops_equals_rows(seed):
    space = load_space("tiny")
    size = (64, 192)
    table = synthetic_table(space, size)
    arch = space.sample(seed)
    ops = space.ops(arch, size)
    expected = sum(fake_ms(op.key) for op in ops)
    assert table.arch_latency(space, arch, size) == pytest.approx(expected)
    assert table.model_latency(ops) == pytest.approx(expected)
    # stem + per-block sums (each block told its incoming width) add up to the same
    total, cin = table.stem_latency(space, size), space.stem.channels
    for i, bc in enumerate(arch.block_choices):
        total += table.block_latency(space, i, bc, cin, size)
        cin = bc.out_channels
    assert total == pytest.approx(expected)


def test_all_ops_covers_sampled_archs():
    space = load_space("tiny")
    keys = {op.key for op in all_ops(space, (64, 192))}
    needed = {op.key for op in unique_ops(space, [space.sample(i) for i in range(200)], (64, 192))}
    assert needed <= keys


def test_fixed_rows_added_per_input_size(tmp_path):
    space = load_space("tiny")
    size = (64, 192)
    base = synthetic_table(space, size)
    rows = list(base.rows.values()) + [
        TableRow("head:a", 2.0, 0, "d", "fp32", "r", "s", "64x192"),
        TableRow("head:b", 5.0, 0, "d", "fp32", "r", "s", "128x384")]
    t = LookupTable(rows)
    t.to_csv(tmp_path / "f.csv")
    t = LookupTable.from_csv(tmp_path / "f.csv")
    arch = space.sample(3)
    assert t.arch_latency(space, arch, size) == pytest.approx(base.arch_latency(space, arch, size) + 2)
    assert t.arch_latency(space, arch, size, include_fixed=False) == pytest.approx(
        base.arch_latency(space, arch, size))


def test_csv_round_trip(tmp_path):
    space = load_space("tiny")
    t = synthetic_table(space, (64, 192))
    t.to_csv(tmp_path / "t.csv")
    again = LookupTable.from_csv(tmp_path / "t.csv")
    assert again.keys() == sorted(t.keys())
    assert all(math.isclose(again.lookup(k), t.lookup(k), rel_tol=1e-7) for k in t.keys())


def test_cache_measures_once(tmp_path, monkeypatch):
    space = load_space("tiny")
    m = OrtMeasurer(repeats=2, warmup=1, rounds=1)
    calls = []
    orig = OrtMeasurer.op_session

    def counting(self, op):
        calls.append(op.key)
        return orig(self, op)

    monkeypatch.setattr(OrtMeasurer, "op_session", counting)
    arch = space.sample(0)
    cache = CachedMeasurer(m, tmp_path / "cache.csv")
    first = cache.arch_latency(space, arch)
    n = len(calls)
    assert n == len({op.key for op in space.ops(arch)})
    again = CachedMeasurer(m, tmp_path / "cache.csv").arch_latency(space, arch)
    assert len(calls) == n and again == pytest.approx(first, rel=1e-6)
    # the cache file is an ordinary table
    assert set(LookupTable.from_csv(tmp_path / "cache.csv").keys()) == {op.key for op in space.ops(arch)}
