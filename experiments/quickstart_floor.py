"""The quickstart predictor's own noise floor: its finetune targets, and its prediction for the
selected architecture, from seed to seed.

A finished quickstart (``OUT``) fitted its predictor on a handful of short distillation finetunes
(``QuickstartConfig.predictor_archs`` + ``predictor_test`` architectures, ``ft_steps`` steps).
This script finetunes the same architectures again, from the same distilled blocks, with other
seeds (``--seeds``; records in ``OUT/supernet_floor/jobs``, so a rerun resumes), refits the same
ridge on each seed's targets, and reports:

* the median seed-to-seed change of the targets (Sq Rel), the figure ``predictor_rank.csv`` gives
  for the 100-step targets of ``experiments/predictor_rank.py``;
* the spread of the *predicted* Sq Rel of the architecture the run selected, over the seeds' refits.

That spread is the noise floor of the quantity the quickstart reproduction compares between two
machines (``quickstart_run.py --compare``): two runs' predicted metrics can only be held to differ by
less than what one machine's predictor moves by when nothing but the seed changes.

    OMP_NUM_THREADS=1 python experiments/quickstart_floor.py OUT --seeds 1 2 3 --workers 2 --record quickstart_floor
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

from _provenance import code_commit, cpu_model  # experiments/ is on sys.path when a script here runs
from _runs import shadow_run

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="a finished quickstart's folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds besides the run's own (0)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--record", default="quickstart_floor", help="results name: experiments/results/RECORD.{csv,md}")
    ap.add_argument("--load", default="alone on the machine", help="what else ran on the machine, for the header")
    a = ap.parse_args()

    import pandas as pd

    from donna_nas.distill.pipeline import _run_jobs
    from donna_nas.distill.quality import nsr_lookup, read_quality_table
    from donna_nas.predictor.features import feature_names, nsr_features
    from donna_nas.predictor.finetune import FinetuneJob, run_finetune_job
    from donna_nas.predictor.models import Ridge
    from donna_nas.runtime.executor import LocalExecutor
    from donna_nas.runtime.io import write_text_atomic
    from donna_nas.space import load_space

    out = Path(a.out)
    run = out / "supernet"
    need = [run / "jobs", run / "tables" / "predictor_train.csv", run / "selected.json", run / "space.yaml"]
    missing = [p for p in need if not p.exists()]
    if missing:
        sys.exit(f"error: {missing[0]}: missing; pass the folder of a finished `donna-nas quickstart --out OUT`")
    space = load_space(run / "space.yaml")
    table = pd.read_csv(run / "tables" / "predictor_train.csv")
    selected = json.loads((run / "selected.json").read_text())
    archs = [space.decode(s) for s in table["arch"]]
    train = (table["split"] == "train").to_numpy()
    lookup = nsr_lookup(read_quality_table(run / "tables" / "block_quality.csv"), space)
    X = nsr_features(archs, lookup, space)
    x_sel = nsr_features([space.decode(selected["arch"])], lookup, space)

    # the run's own finetune records give the job settings (steps, lr, objective, decoder ...)
    own = {}
    for f in sorted((run / "jobs").glob("ft-*.json")):
        rec = json.loads(f.read_text())
        if rec["job"]["seed"] == 0:
            own[rec["arch"]] = rec
    jobs0 = [FinetuneJob(**{**own[s]["job"], "eval_splits": tuple(own[s]["job"].get("eval_splits", ()))})
             for s in table["arch"]]
    shadow = shadow_run(run, f"{run.name}_floor")
    ex = LocalExecutor(a.workers)
    t0 = time.time()
    targets = {0: np.array([own[s]["metrics"]["sq_rel"] for s in table["arch"]])}
    for seed in a.seeds:
        jobs = [dataclasses.replace(j, seed=seed, run_dir=str(shadow)) for j in jobs0]
        recs = _run_jobs(ex, run_finetune_job, jobs, shadow, f"finetune seed {seed}", progress=False)
        targets[seed] = np.array([r["metrics"]["sq_rel"] for r in recs])
    # a resumed run redoes nothing: report the wall time of the invocations that did the work
    tpath = shadow / "floor_timings.json"
    wall = time.time() - t0 + (json.loads(tpath.read_text()).get("wall_s", 0.0) if tpath.is_file() else 0.0)
    write_text_atomic(tpath, json.dumps({"wall_s": wall}))

    names = feature_names(space)
    rows = []
    for seed, y in targets.items():
        ridge = Ridge(feature_names=names).fit(X[train], y[train])
        rows.append({"seed": seed, "mean_target": float(y.mean()), "mean_train_target": float(y[train].mean()),
                     "predicted_selected": float(ridge.predict(x_sel)[0])})
    df = pd.DataFrame(rows)
    pairs = list(combinations(sorted(targets), 2))
    target_change = float(np.median(np.concatenate([np.abs(targets[i] - targets[j]) for i, j in pairs])))
    pred = df["predicted_selected"].to_numpy()
    pred_change = float(np.median([abs(pred[i] - pred[j]) for i, j in combinations(range(len(pred)), 2)]))
    recorded = float(selected.get("predicted_metric", float("nan")))
    RESULTS.mkdir(exist_ok=True)
    df.assign(target_median_change=target_change, predicted_median_change=pred_change).to_csv(
        RESULTS / f"{a.record}.csv", index=False, float_format="%.6f")
    job = jobs0[0]
    cmd = "python experiments/quickstart_floor.py " + shlex.join(sys.argv[1:])
    lines = ["# The quickstart predictor's noise floor", "",
             f"Command: `OMP_NUM_THREADS=1 {cmd}`. Date {datetime.date.today()}; code {code_commit()}. Machine: "
             f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores ({a.load}), 1 torch thread per job, "
             f"{a.workers} jobs at a time.",
             f"Scale: the quickstart in `{out}`: its {int(train.sum())} training + {int((~train).sum())} held-out "
             f"predictor architectures, each finetuned {job.steps} steps (objective `{job.objective}`, decoder "
             f"`{job.decoder}`, lr {job.lr:g}, batch {job.batch}) from the run's distilled blocks, with seed 0 (the "
             f"run's own) and seeds {', '.join(map(str, a.seeds))} ({wall:.0f} s); the same ridge on block NSRs "
             "refitted on each seed's training targets.", "",
             "| seed | mean target Sq Rel (all) | mean training target | predicted Sq Rel of the selected architecture |",
             "|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['mean_target']:.4f} | {r['mean_train_target']:.4f} | {r['predicted_selected']:.4f} |")
    lines += ["",
              f"- Median seed-to-seed change of a target: **{target_change:.4f}** Sq Rel (over {len(pairs)} seed pairs "
              f"x {len(table)} architectures).",
              f"- Median seed-to-seed change of the selected architecture's predicted Sq Rel: **{pred_change:.4f}** "
              f"(range {pred.min():.4f} .. {pred.max():.4f}); the run recorded {recorded:.4f}.",
              "- This is the floor for comparing two quickstarts' predicted metrics: a machine's predictor moves by "
              "this much when only the seed changes.", ""]
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
