"""NSGA-II trials/s by study storage on ``donna_depth``, old against new, side by side in one run.

* old: the search as of 0182fcb (``donna_nas/search/nsga.py`` loaded from git history): in memory,
  and its default custom trial log ``RUN/studies/STUDY.jsonl`` (not openable by optuna);
* new: in memory, the new default (in-memory study mirrored into an optuna journal file once per
  generation, ``RUN/studies/STUDY.log``, opened by ``optuna.load_study`` / ``optuna-dashboard``),
  optuna's own ``JournalFileBackend`` written trial by trial, and SQLite (``--storage sqlite:///``).

Objectives as in ``bench_search.py``: the synthetic additive predictor and ``SyntheticLatency``.
Each row is one search from an empty study; rows alternate old/new so machine load hits both.

    python experiments/bench_search_storage.py [--trials 5000] [--slow-trials 60] [--repeats 2]

Writes experiments/results/bench_search_storage.{csv,md}.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from donna_nas.search.nsga import run_nsga2
from donna_nas.search.objectives import Evaluator, SyntheticLatency, synthetic_predictor
from donna_nas.space import load_space

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
OLD_COMMIT = "0182fcb"


def load_old_nsga():
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:donna_nas/search/nsga.py"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_nsga.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_nsga", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_nsga"] = mod
    spec.loader.exec_module(mod)
    return mod


def optuna_journal_run(space, ev, trials, population, seed, path):
    """The search run directly on optuna's JournalFileBackend (every operation written)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from donna_nas.search.nsga import SeededNSGAIISampler, arch_from_params, distributions

    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="bench",
                                directions=["minimize", "minimize"],
                                sampler=SeededNSGAIISampler(population_size=population, seed=seed))
    dists = distributions(space)
    t0 = time.perf_counter()
    for _ in range(trials):
        trial = study.ask(dists)
        e = ev.evaluate(arch_from_params(space, trial.params))
        for k, v in (("arch", e.arch), ("params", e.params), ("macs", e.macs)):
            trial.set_user_attr(k, v)
        study.tell(trial, [e.metric, e.latency_ms])
    return trials / (time.perf_counter() - t0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--slow-trials", type=int, default=60,
                    help="trials for the storages that write every operation (optuna journal, SQLite)")
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the fast rows (median)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("donna_depth")
    ev = Evaluator(space, synthetic_predictor(space, 0), SyntheticLatency())
    ev.evaluate(space.sample(0))
    old = load_old_nsga()
    n, pop = args.trials, args.population
    rows = []

    def row(version, storage, trials, rate, cpu_rate, openable, note=""):
        rows.append(dict(version=version, storage=storage, trials=trials,
                         trials_per_s_wall=f"{rate:.0f}",
                         trials_per_cpu_s="" if cpu_rate != cpu_rate else f"{cpu_rate:.0f}",
                         optuna_load_study=openable, note=note))
        print(rows[-1], flush=True)

    from donna_nas.search.storage import open_journal

    def timed(fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - w, time.process_time() - c

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        configs = [
            ("old (0182fcb)", "in memory", lambda k: old.run_nsga2(space, ev, trials=n, population=pop, seed=0)),
            ("new", "in memory", lambda k: run_nsga2(space, ev, trials=n, population=pop, seed=0)),
            ("old (0182fcb)", "trial log .jsonl (old default)",
             lambda k: old.run_nsga2(space, ev, trials=n, population=pop, seed=0,
                                     storage=str(tmp / f"old{k}.jsonl"), storage_mode="log",
                                     study_name="bench")),
            ("new", "optuna journal, mirrored per generation (new default)",
             lambda k: run_nsga2(space, ev, trials=n, population=pop, seed=0,
                                 storage=str(tmp / f"new{k}.log"), study_name="bench")),
        ]
        walls: dict[int, list[float]] = {}
        cpus: dict[int, list[float]] = {}
        for rep in range(args.repeats):  # interleaved, so load changes hit every row alike
            for c, (_, _, fn) in enumerate(configs):
                _, w, cpu = timed(lambda: fn(rep))
                walls.setdefault(c, []).append(w)
                cpus.setdefault(c, []).append(cpu)
                print(configs[c][:2], f"{n / w:.0f}/s wall, {n / cpu:.0f}/s cpu", flush=True)
        for c, (version, storage, _) in enumerate(configs):
            wall, cpu = statistics.median(walls[c]), statistics.median(cpus[c])
            note, openable = "", "-"
            if "jsonl" in storage:
                note = f"{(tmp / 'old0.jsonl').stat().st_size / n:.0f} bytes/trial"
                openable = "no (KeyError 'op_code')"
            elif "journal" in storage:
                st = optuna.load_study(study_name="bench", storage=open_journal(tmp / "new0.log"))
                ok = len(st.trials) == n and st.metric_names == [ev.predictor.metric, "latency_ms"]
                openable = "yes, objectives named" if ok else "NO"
                note = f"{(tmp / 'new0.log').stat().st_size / n:.0f} bytes/trial"
            row(version, storage, n, n / wall, n / cpu, openable, note)
        m = args.slow_trials
        rate = optuna_journal_run(space, ev, m, pop, 0, tmp / "plain.log")
        row("new", "optuna JournalFileBackend, every operation (not used)", m, rate, float("nan"), "yes")
        r, w, cpu = timed(lambda: run_nsga2(space, ev, trials=m, population=pop, seed=0,
                                            storage=f"sqlite:///{tmp / 's.db'}", study_name="bench"))
        row("new", "SQLite (--storage sqlite:///, direct)", m, m / w, m / cpu, "yes, objectives named")
    write(Path(args.out), rows, sys.argv)


def write(out: Path, rows, argv) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    with open(out / "bench_search_storage.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# bench_search_storage: NSGA-II trials/s by study storage, old against new", "",
             f"Command: `OMP_NUM_THREADS=1 python experiments/bench_search_storage.py {' '.join(argv[1:])}`".rstrip() + "  ",
             f"Date: {dt.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"shared with other jobs (load average {load:.1f} at the end); Python "
             f"{platform.python_version()}, optuna {optuna.__version__}.  ",
             "Scale: `donna_depth` (9.75e15 architectures), population 50, seed 0, unconstrained; "
             "synthetic additive predictor + `SyntheticLatency`. Each row is a search from an "
             "empty study in this one run; `old` is `donna_nas/search/nsga.py` at 0182fcb. The "
             "four fast rows ran interleaved, `--repeats` times each, median shown; "
             "`trials_per_s_wall` counts wall time (fsyncs and the other jobs on the cores "
             "included), `trials_per_cpu_s` this process's CPU time only.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    (out / "bench_search_storage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
