"""Phone tables: export-blocks → device timings → import reproduces a table."""

import csv

import numpy as np
import pytest

from donna_nas.errors import UserError
from donna_nas.latency import LookupTable, OrtMeasurer
from donna_nas.latency.blocks import export_blocks, import_results, ops_for, read_manifest
from donna_nas.space import load_space


def test_export_import_round_trip(tmp_path):
    space = load_space("tiny")
    size = (32, 96)
    ops = ops_for(space, size, archs=2)
    manifest = export_blocks(ops, tmp_path / "blocks", progress=False)
    entries = read_manifest(manifest)
    assert sorted(e["op"] for e in entries.values()) == sorted(op.key for op in ops)
    # play the phone: time each exported file (here with ONNX Runtime) and write its results
    m = OrtMeasurer(repeats=2, warmup=1, rounds=1)
    results = tmp_path / "results.csv"
    expected = {}
    with results.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "latency_ms", "std_ms"])
        for name, e in entries.items():
            sess = m.session((tmp_path / "blocks" / name).read_bytes())
            shape = tuple(int(v) for v in e["input_shape"].split("x"))
            sess.run(None, {"x": np.zeros(shape, np.float32)})
            ms = 0.5 + len(expected) * 0.25
            expected[e["op"]] = ms
            w.writerow([f"/sdcard/blocks/{name}", ms, 0.01])
    table = import_results(results, manifest, "Test Phone (SoC X) CPU", tmp_path / "phone.csv")
    again = LookupTable.from_csv(tmp_path / "phone.csv")
    assert again.device == "Test Phone (SoC X) CPU" and again.precision == "fp32"
    assert {k: again.lookup(k) for k in again.keys()} == pytest.approx(expected)
    arch = space.sample(0)
    assert table.arch_latency(space, arch, size) == pytest.approx(
        sum(expected[op.key] for op in space.ops(arch, size)))


def test_import_rejects_unknown_files(tmp_path):
    space = load_space("tiny")
    manifest = export_blocks(ops_for(space, (32, 96), archs=1)[:2], tmp_path / "b", progress=False)
    results = tmp_path / "r.csv"
    results.write_text("file,latency_ms\nnot_exported.onnx,1.0\n")
    with pytest.raises(UserError, match="rows 2 name files/ops that are not in the manifest"):
        import_results(results, manifest, "phone")
    results.write_text("name,time\nx,1\n")
    with pytest.raises(UserError, match="needs a 'latency_ms' column"):
        import_results(results, manifest, "phone")
