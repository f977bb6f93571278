"""Benchmark of the search engines on ``donna_depth``: exact solver time, NSGA-II hypervolume ratio
against the exact front after 2k / 5k / 10k evaluations, and evaluations per second (in memory;
per study storage, old against new: ``bench_search_storage.py``).

Objectives: a synthetic additive predictor (``synthetic_predictor``; the fitted DONNA predictor is
additive in the same way) and an additive MAC-based latency stand-in (``SyntheticLatency``), since
no device table for ``donna_depth`` ships. Both are per-block sums, so the exact front is
available as ground truth.

    python experiments/bench_search.py            # full: 10k trials, 3 seeds, populations 50/100
    python experiments/bench_search.py --quick    # smoke: 2k trials, 1 seed

    python experiments/bench_search.py --hv-only --first-seed 3 --seeds 4 --trials 5000 \
        --populations 50 --name bench_search_seeds    # HV spread over more seeds

Writes experiments/results/bench_search.{csv,md} (or NAME.{csv,md}).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from donna_nas.search.api import front_of, hv_ratio
from donna_nas.search.exact import exact_front
from donna_nas.search.nsga import run_nsga2
from donna_nas.search.objectives import Constraints, Evaluator, SyntheticLatency, synthetic_predictor
from donna_nas.space import load_space

RESULTS = Path(__file__).resolve().parent / "results"


def exact_times(space, pred, lat, constraints, repeats):
    cold, warm, front = [], [], None
    for _ in range(repeats):
        ev = Evaluator(space, pred, lat)  # fresh caches: block terms computed inside the timing
        t0 = time.perf_counter()
        front = exact_front(space, ev, constraints)
        cold.append(time.perf_counter() - t0)
        warm.append(exact_front(space, ev, constraints).seconds)
    return statistics.median(cold), statistics.median(warm), front


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--populations", default="50,100")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--hv-only", action="store_true",
                    help="only the unconstrained NSGA-II HV ratios (a seed-spread check)")
    ap.add_argument("--name", default="bench_search", help="results file stem")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.seeds, args.populations = 2000, 1, "50"
    checkpoints = [n for n in (2000, 5000, 10_000) if n <= args.trials]
    space = load_space("donna_depth")
    pred = synthetic_predictor(space, 0)
    lat = SyntheticLatency()
    rows: list[dict] = []

    # ---- exact solver
    free = Constraints()
    cold, warm, ex = exact_times(space, pred, lat, free, 3)
    rows.append(dict(engine="exact", setting="unconstrained (metric, latency)", trials="",
                     population="", seed="", hv_ratio="", value=f"{cold:.3f}",
                     unit="s (cold: block terms + DP)", extra=f"warm {warm:.3f} s; front {len(ex.front)}; "
                     f"partial solutions {ex.partial_solutions}; space {space.size():.3e}"))
    lat_bound = float(np.median([e.latency_ms for e in ex.front]))
    cons = Constraints(max_latency_ms=lat_bound)
    cold_c, warm_c, ex_c = exact_times(space, pred, lat, cons, 3)
    rows.append(dict(engine="exact", setting=f"max latency {lat_bound:.1f} ms", trials="",
                     population="", seed="", hv_ratio="", value=f"{cold_c:.3f}",
                     unit="s (cold)", extra=f"warm {warm_c:.3f} s; front {len(ex_c.front)}"))
    par_bound = int(np.median([e.params for e in ex.front]))
    cold_p, warm_p, ex_p = exact_times(space, pred, lat, Constraints(max_params=par_bound), 1)
    rows.append(dict(engine="exact", setting=f"max params {par_bound / 1e6:.2f}M (3-D DP)", trials="",
                     population="", seed="", hv_ratio="", value=f"{cold_p:.3f}", unit="s (cold)",
                     extra=f"warm {warm_p:.3f} s; front {len(ex_p.front)}; "
                     f"partial solutions {ex_p.partial_solutions}"))
    print(f"exact: cold {cold:.3f} s, warm {warm:.3f} s, front {len(ex.front)}", flush=True)
    write_results(Path(args.out), rows, args, sys.argv, quiet=True)  # a timeout keeps the rows so far

    # ---- NSGA-II: HV ratio at checkpoints (prefixes of one run = stopping there)
    ev = Evaluator(space, pred, lat)
    for pop in [int(p) for p in args.populations.split(",")]:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            res = run_nsga2(space, ev, trials=args.trials, population=pop, seed=seed)
            evals = [t.evaluation for t in res.trials]
            for n in checkpoints:
                ratio, _ = hv_ratio(front_of(evals[:n], "minimize"), ex.front, "minimize")
                rows.append(dict(engine="nsga2", setting="unconstrained, in memory", trials=n,
                                 population=pop, seed=seed, hv_ratio=f"{ratio:.4f}",
                                 value=f"{res.new_trials / res.seconds:.0f}" if n == args.trials else "",
                                 unit="evals/s" if n == args.trials else "", extra=""))
                print(f"pop {pop} seed {seed} n {n}: HV ratio {ratio:.4f}", flush=True)
            write_results(Path(args.out), rows, args, sys.argv, quiet=True)
    if args.hv_only:
        write_results(Path(args.out), rows, args, sys.argv)
        return
    # constrained run, seed 0
    res = run_nsga2(space, ev, cons, trials=args.trials, population=50, seed=0)
    feas = [t.evaluation for t in res.trials if t.feasible]
    for n in checkpoints:
        sub = [t.evaluation for t in res.trials[:n] if t.feasible]
        ratio, _ = hv_ratio(front_of(sub, "minimize"), ex_c.front, "minimize")
        rows.append(dict(engine="nsga2", setting=f"max latency {lat_bound:.1f} ms", trials=n,
                         population=50, seed=0, hv_ratio=f"{ratio:.4f}", value="", unit="",
                         extra=f"{len(feas)} feasible trials of {len(res.trials)}" if n == args.trials else ""))

    # ---- optuna's stock NSGAIISampler (rescans every trial per ask) vs the incremental one
    n_stock = min(args.trials, 4000)
    for fast in (False, True):
        t0 = time.perf_counter()
        run_nsga2(space, ev, trials=n_stock, population=50, seed=0, fast_sampler=fast)
        rows.append(dict(engine="nsga2", setting=("incremental sampler (default)" if fast else
                                                  "stock optuna NSGAIISampler"),
                         trials=n_stock, population=50, seed=0, hv_ratio="",
                         value=f"{n_stock / (time.perf_counter() - t0):.0f}", unit="evals/s",
                         extra="in memory; same trials either way (tested)"))
        print(f"fast={fast}: {rows[-1]['value']} evals/s", flush=True)
    # trials/s by study storage (old trial log vs optuna journal, SQLite): bench_search_storage.py

    write_results(Path(args.out), rows, args, sys.argv)


def write_results(out: Path, rows: list[dict], args, argv, quiet: bool = False) -> None:
    import csv

    out.mkdir(parents=True, exist_ok=True)
    cols = ["engine", "setting", "trials", "population", "seed", "hv_ratio", "value", "unit", "extra"]
    with open(out / f"{args.name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    lines = ["# bench_search: exact Pareto solver and NSGA-II on donna_depth", "",
             f"Command: `python experiments/bench_search.py {' '.join(argv[1:])}`".rstrip() + "  ",
             f"Date: {dt.date.today().isoformat()}; machine: {platform.processor() or platform.machine()}, "
             "2-core CPU shared with other jobs running at the same time (load average 5-10; "
             "timings are noisy and slower than on an idle machine).  ",
             "Objectives: synthetic additive predictor (seed 0) and additive MAC-based latency "
             "stand-in (`SyntheticLatency`); HV in (metric, latency), reference = exact front "
             "nadir x 1.1.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    # summary of HV ratios over seeds
    hv = {}
    for r in rows:
        if r["engine"] == "nsga2" and r["hv_ratio"] and r["setting"].startswith("unconstrained"):
            hv.setdefault((r["population"], r["trials"]), []).append(float(r["hv_ratio"]))
    if hv:
        lines += ["", "HV ratio NSGA-II / exact, mean (min) over seeds:", "",
                  "| population | trials | mean | min |", "|---|---|---|---|"]
        for (pop, n), v in sorted(hv.items()):
            lines.append(f"| {pop} | {n} | {statistics.mean(v):.4f} | {min(v):.4f} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    if not quiet:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
