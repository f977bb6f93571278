"""How well does the op latency model fill in ops nobody measured?

Measures (ONNX Runtime, this CPU) the op instances of ``--fit-archs`` sampled donna_depth
architectures, fits ``OpLatencyModel`` on them, then for ``--test-archs`` *other* architectures
compares (a) the model's prediction of every op not in the fitted table with its measurement and
(b) the model-filled sum of each architecture with its measured whole-model latency.

    python experiments/bench_latency_model.py --size 192x640 --fit-archs 30 --test-archs 12
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from donna_nas import load_space
from donna_nas.latency import LookupTable, OrtMeasurer
from donna_nas.latency.model import ModelledLatency, OpLatencyModel, cross_validate
from donna_nas.nn.builder import build_encoder
from donna_nas.space.ops import all_ops, unique_ops

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="donna_depth")
    ap.add_argument("--size", default="192x640")
    ap.add_argument("--fit-archs", type=int, default=30)
    ap.add_argument("--test-archs", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    space = load_space(args.space)
    t0 = time.time()
    m = OrtMeasurer(args.precision, repeats=args.repeats, warmup=3)
    fit_archs = [space.sample(i) for i in range(args.fit_archs)]
    test_archs = [space.sample(10_000 + i) for i in range(args.test_archs)]
    fit_ops = unique_ops(space, fit_archs, size)
    fit_keys = {o.key for o in fit_ops}
    test_ops = [o for o in unique_ops(space, test_archs, size) if o.key not in fit_keys]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        table = m.measure_ops(fit_ops, None, Path(tmp) / "fit.csv", progress=True)
        fit_seconds = time.time() - t
        test_table = m.measure_ops(test_ops, None, Path(tmp) / "test.csv", progress=True)
        # keep the measured rows: they are this machine's table (and let the model be refitted)
        RESULTS.mkdir(exist_ok=True)
        for name in ("fit", "test"):
            (RESULTS / f"bench_latency_model_{name}_ops.csv").write_bytes((Path(tmp) / f"{name}.csv").read_bytes())
    model = OpLatencyModel.fit(fit_ops, [table.rows[o.key].latency_ms for o in fit_ops])
    cv = cross_validate(fit_ops, [table.rows[o.key].latency_ms for o in fit_ops])
    op_err = np.array([model.predict(o) / test_table.rows[o.key].latency_ms - 1 for o in test_ops])

    filled = ModelledLatency(table, model)
    full = LookupTable(list(table.rows.values()) + list(test_table.rows.values()))
    rows = []
    for arch in test_archs:
        enc = build_encoder(space, arch, size)
        whole = m.measure_module(enc, (1, 3, *size), image=True).median_ms
        ops = space.ops(arch, size)
        unseen = sum(o.key not in fit_keys for o in ops)
        rows.append({"arch": arch.encode(), "ops": len(ops), "ops_not_in_fit_table": unseen,
                     "measured_ms": whole,
                     "model_filled_sum_ms": filled.arch_latency(space, arch, size),
                     "all_measured_sum_ms": full.arch_latency(space, arch, size)})
    for r in rows:
        r["model_filled_err_pct"] = 100 * (r["model_filled_sum_ms"] / r["measured_ms"] - 1)
        r["all_measured_err_pct"] = 100 * (r["all_measured_sum_ms"] / r["measured_ms"] - 1)
    filled_err = np.array([r["model_filled_err_pct"] for r in rows])
    measured_err = np.array([r["all_measured_err_pct"] for r in rows])
    n_all = len(all_ops(space, size))
    summary = [
        ("distinct op instances in the space", n_all, f"{args.space} at {args.size}"),
        ("ops measured to fit the model", len(fit_ops), f"ops of {args.fit_archs} archs, {fit_seconds:.0f} s"),
        ("share of the space measured", f"{len(fit_ops) / n_all:.1%}", ""),
        ("5-fold CV per-op median |error| %", f"{100 * np.median(np.abs(cv)):.1f}", "on the fitted ops"),
        ("unseen ops: median |error| %", f"{100 * np.median(np.abs(op_err)):.1f}", f"{len(test_ops)} ops of {args.test_archs} other archs"),
        ("unseen ops: 90th pct |error| %", f"{100 * np.percentile(np.abs(op_err), 90):.1f}", ""),
        ("whole archs, model-filled sum within ±10%", f"{np.mean(np.abs(filled_err) <= 10):.0%}", f"{len(rows)} held-out archs"),
        ("whole archs, model-filled median |error| %", f"{np.median(np.abs(filled_err)):.1f}", ""),
        ("whole archs, all-measured sum within ±10%", f"{np.mean(np.abs(measured_err) <= 10):.0%}", "the table alone, for comparison"),
        ("whole archs, all-measured median |error| %", f"{np.median(np.abs(measured_err)):.1f}", ""),
        ("benchmark wall time (s)", f"{time.time() - t0:.0f}", ""),
    ]
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "bench_latency_model.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = (f"python experiments/bench_latency_model.py --space {args.space} --size {args.size} "
           f"--fit-archs {args.fit_archs} --test-archs {args.test_archs} --repeats {args.repeats} "
           f"--precision {args.precision}")
    md = [f"# Op latency model ({args.precision}, {args.space} at {args.size})", "",
          f"Command: `{cmd}`  ",
          f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} "
          f"2-core CPU, ONNX Runtime 1 thread, batch 1 (CPU-clock timing; other jobs may share the cores).",
          "", "| metric | value | note |", "|---|---|---|"]
    md += [f"| {a} | {b} | {c} |" for a, b, c in summary]
    md += ["", "Per-arch rows: `bench_latency_model.csv`."]
    (RESULTS / "bench_latency_model.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
