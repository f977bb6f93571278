"""Run (or resume) the default quickstart (on the shipped teacher) and keep its table, report and
figures as results (``experiments/results/quickstart.{md,csv}``).

    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart
    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart_trained --train-teacher
    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart2 --record quickstart_run2
    python experiments/quickstart_run.py --compare runs/quickstart runs/quickstart2

``--record NAME`` keeps the results as ``experiments/results/NAME.{md,csv}`` (default ``quickstart``).
``--compare A B [C ...]`` writes ``experiments/results/quickstart_repro.{md,csv}``: whether finished
quickstarts (run on two machines, or at two times) selected architectures whose predicted metrics
differ by less than the predictor's noise floor (``experiments/results/predictor_rank.csv``:
the median seed-to-seed change of the finetune targets) and whether their final Sq Rel agree
within 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from donna_nas.quickstart import QuickstartConfig, run_quickstart, selection_markdown, table_markdown
from donna_nas.runtime.io import write_text_atomic
from donna_nas.tasks.depth.evaluate import beats

from _provenance import code_commit, cpu_model  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/quickstart")
    ap.add_argument("--train-teacher", action="store_true", help="the path that trains both teachers first")
    ap.add_argument("--record", default="quickstart", help="results name: experiments/results/NAME.{md,csv}")
    ap.add_argument("--compare", nargs="+", metavar="OUT", help="compare two or more finished quickstart folders")
    ap.add_argument("--load", default="alone on the machine",
                    help="what else ran on the machine meanwhile (recorded with the timings)")
    args = ap.parse_args()
    if args.compare:
        if len(args.compare) < 2:
            ap.error("--compare needs at least two quickstart folders")
        return compare(*args.compare)
    out = Path(args.out)
    cfg = QuickstartConfig.small(args.train_teacher)
    result = run_quickstart(out, cfg)
    RESULTS.mkdir(exist_ok=True)
    rec = args.record
    shutil.copyfile(out / "quickstart_table.csv", RESULTS / f"{rec}.csv")
    for name in ("pareto.png", "depth_searched.png", "depth_teacher.png"):
        if (out / "plots" / name).is_file():
            shutil.copyfile(out / "plots" / name, RESULTS / f"{rec}_{name}")
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    flag = " --train-teacher" if args.train_teacher else ""
    timings = result["timings"]
    md = ["# Quickstart (default scale)", "",
          f"Command: `donna-nas quickstart --out {args.out}{flag}` (recorded by `python "
          f"experiments/quickstart_run.py --out {args.out}{flag}"
          + (f" --record {rec}" if rec != "quickstart" else "") + "`)  ",
          f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; code {code_commit()}; machine: {cpu_model()} "
          f"({platform.machine()}), "
          f"{os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS', '1')} thread(s) per process, "
          f"{cfg.workers} build-supernet workers; {args.load}.  ",
          f"Total time: {sum(timings.values()):.0f} s (target ≤ 15 min).", "",
          table_markdown(result["rows"]),
          *selection_markdown(selected, result["rows"]), "",
          "| stage | seconds |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()], "",
          f"Figures: `{rec}_pareto.png`, `{rec}_depth_searched.png`, `{rec}_depth_teacher.png`."]
    write_text_atomic(RESULTS / f"{rec}.md", "\n".join(md) + "\n")
    print("\n".join(md))


def compare(*outs: str) -> None:
    """``quickstart_repro.{md,csv}``: the runs' selections and results side by side, and for each
    pair whether the predicted metrics differ by less than the noise floor and the final Sq Rel
    agree within 10%."""
    import csv

    floor = None
    rank = RESULTS / "predictor_rank.csv"
    if rank.is_file():
        with rank.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("metric", "sq_rel") == "sq_rel" and r.get("seed_median_abs_diff")]
        floor = float(rows[0]["seed_median_abs_diff"]) if rows else None
    runs = []
    for out in (Path(o) for o in outs):
        sel = json.loads((out / "supernet" / "selected.json").read_text())
        with (out / "quickstart_table.csv").open() as f:
            table = {r["model"]: r for r in csv.DictReader(f)}
        t, s = table["teacher"], table["searched"]

        def metrics(row: dict) -> dict:
            return {"abs_rel": float(row["abs_rel_fp32"]), "sq_rel": float(row["sq_rel_fp32"])}

        base = {b: metrics(table[b]) for b in ("constant", "prior")}
        runs.append({"run": str(out), "arch": sel["arch"], "predicted_sq_rel": sel["predicted_metric"],
                     "deployed_ms": sel.get("deployed_latency_ms"), "teacher_deployed_ms": sel.get("teacher_deployed_ms"),
                     "sq_rel": float(s["sq_rel_fp32"]), "sq_rel_vs_teacher": float(s["sq_rel_fp32"]) / float(t["sq_rel_fp32"]),
                     "fps_int8_vs_teacher": float(s["fps_int8"]) / float(t["fps_int8"]),
                     "seconds": sum(json.loads((out / "timings.json").read_text()).values()),
                     "constant_sq_rel": base["constant"]["sq_rel"], "prior_sq_rel": base["prior"]["sq_rel"],
                     "beats_constant_and_prior": all(beats(metrics(s), b) for b in base.values())})
    with (RESULTS / "quickstart_repro.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(runs[0]))
        w.writeheader()
        w.writerows(runs)
    md = [f"# Quickstart reproduction: {len(runs)} default runs", "",
          f"Command: `python experiments/quickstart_run.py --compare {' '.join(outs)}`. Date: "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {cpu_model()} ({platform.machine()}), {os.cpu_count()} cores.", "",
          "| run | selected architecture | predicted Sq Rel | deployed ms (teacher) | Sq Rel | Sq Rel / teacher | "
          "INT8 FPS / teacher | seconds | Sq Rel constant / prior (no image) | beats both (abs_rel and Sq Rel) |",
          "|---|---|---:|---|---:|---:|---:|---:|---|---|"]
    for r in runs:
        dep = "–" if r["deployed_ms"] is None else f"{r['deployed_ms']:.3g} ({r['teacher_deployed_ms']:.3g})"
        md.append(f"| {r['run']} | `{r['arch']}` | {r['predicted_sq_rel']:.4f} | {dep} | {r['sq_rel']:.4f} | "
                  f"{r['sq_rel_vs_teacher']:.2f} | {r['fps_int8_vs_teacher']:.2f} | {r['seconds']:.0f} | "
                  f"{r['constant_sq_rel']:.4f} / {r['prior_sq_rel']:.4f} | "
                  f"{'yes' if r['beats_constant_and_prior'] else '**no**'} |")
    floor_txt = f"{floor:.4f}" if floor is not None else "not measured"
    md += ["", f"Noise floor of the predictor (median seed-to-seed change of its finetune targets, "
               f"`predictor_rank.csv`): {floor_txt}. Targets per pair: predicted Sq Rel closer than the floor, "
               f"final Sq Rel within 10%.", "",
           "| pair | same architecture | predicted Sq Rel difference | | final Sq Rel difference | |",
           "|---|---|---:|---|---:|---|"]
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            r1, r2 = runs[i], runs[j]
            dpred = abs(r1["predicted_sq_rel"] - r2["predicted_sq_rel"])
            dsq = abs(r1["sq_rel"] - r2["sq_rel"]) / min(r1["sq_rel"], r2["sq_rel"])
            ok_pred = "–" if floor is None else ("met" if dpred < floor else "**missed**")
            md.append(f"| {i + 1} – {j + 1} | {'yes' if r1['arch'] == r2['arch'] else 'no'} | {dpred:.4f} | {ok_pred} | "
                      f"{100 * dsq:.1f}% | {'met' if dsq < 0.10 else '**missed**'} |")
    write_text_atomic(RESULTS / "quickstart_repro.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
