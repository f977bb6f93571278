"""Latency subsystem benchmark on this CPU (ONNX Runtime, 1 thread).

Reports: how many ops per second `latency measure` gets through (fp32 and INT8), the INT8
speed-up per op family, and the additivity validation of donna_depth at 192x640 (sum of op rows
vs whole measured encoder; share within ±10%, median |error|, and a linear recalibration
fitted on half the archs and judged on the other half).

    python experiments/bench_latency.py                      # defaults below, ~5-8 min on 2 cores
    python experiments/bench_latency.py --archs 10 --val-archs 10 --int8-val-archs 4   # quick
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from donna_nas.latency import CachedMeasurer, LookupTable, OrtMeasurer
from donna_nas.latency.blocks import ops_for
from donna_nas.latency.validate import validate, write_report
from donna_nas.space import load_space
from donna_nas.space.ops import all_ops

RESULTS = Path(__file__).resolve().parent / "results"


def measure_table(precision: str, ops, path: Path, repeats: int) -> tuple[LookupTable, float]:
    m = OrtMeasurer(precision, threads=1, warmup=3, repeats=repeats, rounds=3)
    t0 = time.perf_counter()
    table = m.measure_ops(ops, None, path, progress=False)
    return table, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="donna_depth")
    ap.add_argument("--size", default="192x640")
    ap.add_argument("--archs", type=int, default=40, help="archs whose ops are measured fp32+int8")
    ap.add_argument("--val-archs", type=int, default=40, help="fp32 whole-model validation archs")
    ap.add_argument("--int8-val-archs", type=int, default=10, help="INT8 validation archs")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    space = load_space(args.space)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    t_all = time.perf_counter()
    n_all = len(all_ops(space, size))
    # the validation archs' ops are what gets measured (seeds seed .. seed+archs-1)
    ops = ops_for(space, size, archs=max(args.archs, args.val_archs), seed=args.seed)
    rows: list[tuple[str, str, str]] = []

    def put(metric, value, note=""):
        rows.append((metric, value if isinstance(value, str) else f"{value:.4g}", note))
        print(f"{metric:<48} {rows[-1][1]:>10}  {note}", flush=True)

    put("distinct op instances in the space", n_all, f"{args.space} at {args.size}")
    put("ops measured (needed by sampled archs)", len(ops), f"archs seeds {args.seed}..")
    with tempfile.TemporaryDirectory() as tmp:
        tables, secs = {}, {}
        for prec in ("fp32", "int8"):
            tables[prec], secs[prec] = measure_table(prec, ops, Path(tmp) / f"{prec}.csv",
                                                     args.repeats)
            put(f"{prec} ops measured per second", len(ops) / secs[prec],
                f"{secs[prec]:.0f} s incl. export{' + QDQ quantisation' if prec == 'int8' else ''}")
            put(f"{prec} estimated time for the whole space (min)", n_all / (len(ops) / secs[prec]) / 60)
        for kind in ("stem", "ir", "fused_ir", "gconv"):
            ks = [op.key for op in ops if op.kind == kind]
            if not ks:
                continue
            sp = [tables["fp32"].lookup(k) / tables["int8"].lookup(k) for k in ks]
            tot = sum(tables["fp32"].lookup(k) for k in ks) / sum(tables["int8"].lookup(k) for k in ks)
            put(f"int8 speed-up {kind} (median over ops)", statistics.median(sp),
                f"n={len(ks)}, range {min(sp):.2f}-{max(sp):.2f}, time-weighted {tot:.2f}")
        reports = {}
        for prec, n in (("fp32", args.val_archs), ("int8", args.int8_val_archs)):
            if n <= 0:
                continue
            m = OrtMeasurer(prec, threads=1, warmup=3, repeats=args.repeats, rounds=3)
            cache = CachedMeasurer(m, Path(tmp) / f"{prec}.csv")
            t0 = time.perf_counter()
            rep = validate(space, cache, n, size, seed=args.seed, repeats=args.repeats,
                           progress=False)
            s = rep.summary
            reports[prec] = rep
            note = f"{n} archs, {time.perf_counter() - t0:.0f} s"
            put(f"{prec} validation: raw within ±10%", s["raw_within_10pct"], note)
            put(f"{prec} validation: raw median |error| %", s["raw_median_abs_err_pct"])
            put(f"{prec} validation: raw mean error % (sum - measured)", s["raw_mean_err_pct"])
            put(f"{prec} validation: held-out raw within ±10%", s["holdout_raw_within_10pct"],
                f"{s['holdout_archs']} held-out archs")
            put(f"{prec} validation: held-out recalibrated within ±10%",
                s["holdout_corrected_within_10pct"],
                f"x{s['correction_scale']:.3f} {s['correction_offset_ms']:+.2f} ms fitted on "
                f"{s['fit_archs']} archs")
            put(f"{prec} validation: held-out recalibrated median |error| %",
                s["holdout_corrected_median_abs_err_pct"])
            put(f"{prec} validation: measured whole-model ms (min-median-max)",
                "-".join(f"{v:.1f}" for v in np.percentile(
                    [r.measured_ms for r in rep.results], [0, 50, 100])))
            write_report(rep, Path(tmp) / prec)
            (RESULTS / f"bench_latency_{prec}_scatter.png").write_bytes(
                (Path(tmp) / prec / "validation_scatter.png").read_bytes())
            (RESULTS / f"bench_latency_{prec}_archs.csv").write_bytes(
                (Path(tmp) / prec / "validation.csv").read_bytes())
    total = time.perf_counter() - t_all
    put("benchmark wall time (s)", total)
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "bench_latency.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "value", "note"])
        w.writerows(rows)
    cmd = "python experiments/bench_latency.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = [f"# Latency benchmark ({args.space} at {args.size})", "",
          f"Command: `{cmd.strip()}`  ", f"Date: {started}; wall time {total:.0f} s.  ",
          f"Machine: 2-core CPU ({OrtMeasurer().device}), ONNX Runtime, 1 intra-op thread, "
          f"batch 1. The 2 cores are shared with other engineers' jobs running at the same time, "
          f"so wall-clock throughput (ops/s, wall times) is noisy. Latencies use the computing "
          f"thread's CPU clock (`--clock cpu`, the default with 1 thread), which leaves out time "
          f"other processes held the core; each op/model is timed in 3 rounds (ops round-robin "
          f"in batches of 8) and the lowest round median is kept. Load average (1 min) at start "
          f"{load0:.1f}, at end {os.getloadavg()[0]:.1f}.  ",
          f"Scale: ops of {max(args.archs, args.val_archs)} sampled archs (seeds {args.seed}..), "
          f"{args.repeats} timed runs each after 3 warm-ups; {args.val_archs} fp32 and "
          f"{args.int8_val_archs} INT8 archs validated whole (first half fits the recalibration, "
          f"second half is held out).", "",
          "| metric | value | note |", "|---|---|---|"]
    md += [f"| {a.replace('|', chr(92) + '|')} | {b} | {c} |" for a, b, c in rows]
    md += ["", "Scatter plots: `bench_latency_fp32_scatter.png`, `bench_latency_int8_scatter.png`; "
           "per-arch rows: `bench_latency_{fp32,int8}_archs.csv`.", ""]
    (RESULTS / "bench_latency.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
