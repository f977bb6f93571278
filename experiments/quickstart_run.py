"""Run (or resume) the default quickstart (on the shipped teacher) and keep its table, report and
figures as results (``experiments/results/quickstart.{md,csv}``).

    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart
    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart_trained --train-teacher
    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart2 --record quickstart_run2
    python experiments/quickstart_run.py --compare runs/quickstart runs/quickstart2
    python experiments/quickstart_run.py --compare experiments/results/quickstart_repro.csv runs/quickstart3 \
        --record quickstart_repro_machines

``--record NAME`` keeps the results as ``experiments/results/NAME.{md,csv}`` (default ``quickstart``,
and ``quickstart_repro`` for ``--compare``). Each run also writes ``OUT/provenance.json`` (code,
machine, date, load), because a reproduction is judged across machines.
``--compare A B [C ...]`` writes ``experiments/results/quickstart_repro.{md,csv}``: whether finished
quickstarts (run on two machines, or at two times) selected architectures whose predicted metrics
differ by less than the predictor's noise floor (two floors side by side: the median seed-to-seed
change of the 100-step finetune targets, ``experiments/results/predictor_rank.csv``, and that of the
quickstart predictor's own prediction, ``experiments/results/quickstart_floor.csv`` from
``experiments/quickstart_floor.py``) and whether their final Sq Rel agree
within 10%. An argument may also be an earlier comparison's CSV: its rows are carried over as
recorded, so a run on another machine, whose folder is gone, can still be compared with a new one.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

from donna_nas.quickstart import QuickstartConfig, run_quickstart, selection_markdown, table_markdown
from donna_nas.runtime.io import write_text_atomic
from donna_nas.tasks.depth.evaluate import beats

from _provenance import code_commit, cpu_model  # experiments/ is on sys.path when a script here runs

RESULTS = Path(__file__).resolve().parent / "results"
_FIELDS = ("run", "machine", "code", "arch", "predicted_sq_rel", "deployed_ms", "teacher_deployed_ms", "sq_rel",
           "sq_rel_vs_teacher", "fps_int8_vs_teacher", "seconds", "constant_sq_rel", "prior_sq_rel",
           "beats_constant_and_prior")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/quickstart")
    ap.add_argument("--train-teacher", action="store_true", help="the path that trains both teachers first")
    ap.add_argument("--record", default=None,
                    help="results name: experiments/results/NAME.{md,csv} (default quickstart, or quickstart_repro "
                         "with --compare)")
    ap.add_argument("--compare", nargs="+", metavar="OUT",
                    help="compare two or more finished quickstart folders (or earlier quickstart_repro CSVs)")
    ap.add_argument("--load", default="alone on the machine",
                    help="what else ran on the machine meanwhile (recorded with the timings)")
    args = ap.parse_args()
    if args.compare:
        if len(args.compare) < 2 and not args.compare[0].endswith(".csv"):
            ap.error("--compare needs at least two quickstart folders (or an earlier comparison's CSV)")
        return compare(*args.compare, record=args.record or "quickstart_repro")
    out = Path(args.out)
    cfg = QuickstartConfig.small(args.train_teacher)
    result = run_quickstart(out, cfg)
    RESULTS.mkdir(exist_ok=True)
    rec = args.record or "quickstart"
    # the count the run chose (fewer than --workers when other processes held the cores)
    ft_path = out / "final_threads.json"
    final_threads = json.loads(ft_path.read_text())["threads"] if ft_path.is_file() else "unrecorded"
    provenance = {"code": code_commit(), "machine": f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores",
                  "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "load": args.load, "record": rec}
    write_text_atomic(out / "provenance.json", json.dumps(provenance, indent=1) + "\n")
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
          f"Date: {provenance['date']}; code {provenance['code']}; machine: {provenance['machine']}, "
          f"{os.environ.get('OMP_NUM_THREADS', '1')} thread(s) per process, "
          f"{cfg.workers} build-supernet workers, the final finetune on {final_threads} thread(s); {args.load}.  ",
          f"Total time: {sum(timings.values()):.0f} s (target ≤ 15 min).", "",
          table_markdown(result["rows"]),
          *selection_markdown(selected, result["rows"]), "",
          "| stage | seconds |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()], "",
          f"Figures: `{rec}_pareto.png`, `{rec}_depth_searched.png`, `{rec}_depth_teacher.png`."]
    write_text_atomic(RESULTS / f"{rec}.md", "\n".join(md) + "\n")
    print("\n".join(md))


def _row(run: str, prov: dict, table_csv: Path, arch: str, predicted: float, deployed_ms: float | None,
         teacher_deployed_ms: float | None, seconds: float) -> dict:
    """A comparison row: the run's selection and the teacher / searched / baseline rows of its
    ``quickstart_table.csv``."""
    import csv

    with table_csv.open() as f:
        table = {r["model"]: r for r in csv.DictReader(f)}
    t, s = table["teacher"], table["searched"]

    def metrics(row: dict) -> dict:
        return {"abs_rel": float(row["abs_rel_fp32"]), "sq_rel": float(row["sq_rel_fp32"])}

    base = {b: metrics(table[b]) for b in ("constant", "prior")}
    return {"run": run, "machine": prov["machine"], "code": prov["code"], "arch": arch, "predicted_sq_rel": predicted,
            "deployed_ms": deployed_ms, "teacher_deployed_ms": teacher_deployed_ms,
            "sq_rel": float(s["sq_rel_fp32"]), "sq_rel_vs_teacher": float(s["sq_rel_fp32"]) / float(t["sq_rel_fp32"]),
            "fps_int8_vs_teacher": float(s["fps_int8"]) / float(t["fps_int8"]), "seconds": seconds,
            "constant_sq_rel": base["constant"]["sq_rel"], "prior_sq_rel": base["prior"]["sq_rel"],
            "beats_constant_and_prior": all(beats(metrics(s), b) for b in base.values())}


def _folder_run(out: Path) -> dict:
    """One finished quickstart folder as a comparison row."""
    sel = json.loads((out / "supernet" / "selected.json").read_text())
    prov_path = out / "provenance.json"
    # a folder recorded before provenance.json existed is taken to have run on this machine
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {
        "machine": f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores (this machine)", "code": "unrecorded"}
    return _row(str(out), prov, out / "quickstart_table.csv", sel["arch"], sel["predicted_metric"],
                sel.get("deployed_latency_ms"), sel.get("teacher_deployed_ms"),
                sum(json.loads((out / "timings.json").read_text()).values()))


def _record_run(table_csv: Path) -> dict:
    """A recorded quickstart (``experiments/results/NAME.csv`` and the ``NAME.md`` beside it) as a
    comparison row, for a run whose folder is gone (another machine). The selection comes from the
    markdown, at its printed precision (predicted Sq Rel to 4 decimals, latencies to 3 digits)."""
    import re

    md = table_csv.with_suffix(".md").read_text()

    def find(pattern: str) -> re.Match:
        m = re.search(pattern, md)
        if m is None:
            sys.exit(f"error: {table_csv.with_suffix('.md')}: no {pattern!r}; it is not a quickstart record "
                     f"written by this script")
        return m

    dep = re.search(r"the whole network runs ([\d.]+) ms, [\d.]+× the teacher's ([\d.]+) ms", md)
    prov = {"code": find(r"; code (\S+);").group(1) + " (recorded)",
            "machine": find(r"machine: (.+?, \d+ cores)").group(1)}
    return _row(str(table_csv), prov, table_csv, find(r"\n`(b1:[^`]+)`").group(1),
                float(find(r"predicted sq_rel ([\d.]+)").group(1)),
                float(dep.group(1)) if dep else None, float(dep.group(2)) if dep else None,
                float(find(r"Total time: ([\d.]+) s").group(1)))


def _recorded_runs(path: Path) -> list[dict]:
    """The rows of an earlier comparison's CSV, as recorded. A file written before the machine and
    code columns existed takes its machine from its markdown's header (the comparison ran on the
    machine of its runs) and leaves the code unrecorded."""
    import csv
    import re

    with path.open() as f:
        rows = list(csv.DictReader(f))
    header = path.with_suffix(".md").read_text() if path.with_suffix(".md").is_file() else ""
    found = re.search(r"machine: (.+?), \d+ cores", header)
    for r in rows:
        r.setdefault("machine", f"{found.group(1)}, recorded" if found else "unrecorded")
        r.setdefault("code", "unrecorded")
        for k in ("predicted_sq_rel", "sq_rel", "sq_rel_vs_teacher", "fps_int8_vs_teacher", "seconds",
                  "constant_sq_rel", "prior_sq_rel"):
            r[k] = float(r[k])
        for k in ("deployed_ms", "teacher_deployed_ms"):
            r[k] = float(r[k]) if r[k] not in ("", "None") else None
        r["beats_constant_and_prior"] = r["beats_constant_and_prior"] == "True"
    return rows


def compare(*sources: str, record: str = "quickstart_repro") -> None:
    """``RECORD.{md,csv}``: the runs' selections and results side by side, and for each pair
    whether the predicted metrics differ by less than the noise floor and the final Sq Rel agree
    within 10%. A source is a finished quickstart folder or an earlier comparison's CSV."""
    import csv

    floors = noise_floors()
    runs = []
    for src in (Path(o) for o in sources):
        if src.suffix == ".csv":  # an earlier comparison, or one recorded quickstart
            runs += [_record_run(src)] if "model," in src.read_text().splitlines()[0] else _recorded_runs(src)
        else:
            runs.append(_folder_run(src))
    if len(runs) < 2:
        sys.exit(f"error: --compare {' '.join(sources)}: {len(runs)} run(s) found; a comparison needs two or more")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(_FIELDS), lineterminator="\n")
    w.writeheader()
    w.writerows(runs)
    write_text_atomic(RESULTS / f"{record}.csv", buf.getvalue())
    md = [f"# Quickstart reproduction: {len(runs)} default runs", "",
          f"Command: `python experiments/quickstart_run.py --compare {' '.join(sources)}"
          + (f" --record {record}" if record != "quickstart_repro" else "") + "`. Date: "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; compared on: {cpu_model()} ({platform.machine()}), "
          f"{os.cpu_count()} cores. Each run's own machine and code are in its row.", "",
          "| run | machine | code | selected architecture | predicted Sq Rel | deployed ms (teacher) | Sq Rel | "
          "Sq Rel / teacher | INT8 FPS / teacher | seconds | Sq Rel constant / prior (no image) | "
          "beats both (abs_rel and Sq Rel) |",
          "|---|---|---|---|---:|---|---:|---:|---:|---:|---|---|"]
    for r in runs:
        dep = "–" if r["deployed_ms"] is None else f"{r['deployed_ms']:.3g} ({r['teacher_deployed_ms']:.3g})"
        md.append(f"| {r['run']} | {r['machine']} | {r['code']} | `{r['arch']}` | {r['predicted_sq_rel']:.4f} | {dep} | {r['sq_rel']:.4f} | "
                  f"{r['sq_rel_vs_teacher']:.2f} | {r['fps_int8_vs_teacher']:.2f} | {r['seconds']:.0f} | "
                  f"{r['constant_sq_rel']:.4f} / {r['prior_sq_rel']:.4f} | "
                  f"{'yes' if r['beats_constant_and_prior'] else '**no**'} |")
    md += ["", "Noise floors of the predicted Sq Rel (what a predictor's figures move by when only the seed changes):"]
    md += [f"- {name}: {'not measured' if f is None else f'{f:.4f}'}" for name, f in floors.items()]
    md += ["", "Targets per pair: predicted Sq Rel closer than the floor, final Sq Rel within 10%. The first floor "
               "belongs to other targets (100-step finetunes of experiments/predictor_rank.py, Sq Rel about 0.85); "
               "the second is that of the predictor the quickstart fits and selects with (15-step targets, Sq Rel "
               "about 2.3), the one whose figures the runs compare.", "",
           "| pair | same architecture | predicted Sq Rel difference | " + " | ".join(
               f"under {f'{f:.3f}' if f is not None else '–'}" for f in floors.values())
           + " | final Sq Rel difference | |",
           "|---|---|---:|" + "---|" * len(floors) + "---:|---|"]
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            r1, r2 = runs[i], runs[j]
            dpred = abs(r1["predicted_sq_rel"] - r2["predicted_sq_rel"])
            dsq = abs(r1["sq_rel"] - r2["sq_rel"]) / min(r1["sq_rel"], r2["sq_rel"])
            verdicts = " | ".join("–" if f is None else ("met" if dpred < f else "**missed**") for f in floors.values())
            md.append(f"| {i + 1} – {j + 1} | {'yes' if r1['arch'] == r2['arch'] else 'no'} | {dpred:.4f} | {verdicts} | "
                      f"{100 * dsq:.1f}% | {'met' if dsq < 0.10 else '**missed**'} |")
    md += speedup_markdown(runs)
    write_text_atomic(RESULTS / f"{record}.md", "\n".join(md) + "\n")
    print("\n".join(md))


def noise_floors() -> dict[str, float | None]:
    """The two noise floors a reproduction's predicted metrics are held to, by name (None where the
    result file is missing): the 100-step targets' median seed-to-seed change
    (``predictor_rank.csv``) and the quickstart predictor's own, the median seed-to-seed change of
    its prediction for the selected architecture (``quickstart_floor.csv``, experiments/quickstart_floor.py)."""
    return {
        "100-step finetune targets' median seed-to-seed change (`predictor_rank.csv`)":
            _first_value(RESULTS / "predictor_rank.csv", "seed_median_abs_diff",
                         lambda r: r.get("metric", "sq_rel") == "sq_rel"),
        "the quickstart predictor's: median seed-to-seed change of its predicted Sq Rel for the selected "
        "architecture (`quickstart_floor.csv`)": _first_value(RESULTS / "quickstart_floor.csv", "predicted_median_change"),
    }


def _first_value(path: Path, column: str, keep=lambda row: True) -> float | None:
    """``column`` of the first row of the CSV at ``path`` that ``keep`` accepts and that has it; None otherwise."""
    import csv

    if not path.is_file():
        return None
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if keep(r) and r.get(column)]
    return float(rows[0][column]) if rows else None


def speedup_markdown(runs: list[dict]) -> list[str]:
    """The selected network's INT8 speed-up as the deployed check read it (the median of its
    pairings with the teacher, at selection) against the table's side-by-side timing of the
    trained exports afterwards: how much margin the check's guard band must leave."""
    checked = [r for r in runs if r["deployed_ms"] and r["teacher_deployed_ms"]]
    if not checked:
        return []
    md = ["", "INT8 speed-up of the selected network: the deployed check at selection against the table's timing "
          "of the exports afterwards.", "", "| run | deployed check | table | table / check |", "|---|---:|---:|---:|"]
    shrink = []
    for r in checked:
        check = r["teacher_deployed_ms"] / r["deployed_ms"]
        shrink.append(r["fps_int8_vs_teacher"] / check)
        md.append(f"| {r['run']} | {check:.2f}× | {r['fps_int8_vs_teacher']:.2f}× | {shrink[-1]:.3f} |")
    worst = min(shrink)
    md += ["", f"Table / check over {len(shrink)} runs: median {statistics.median(shrink):.3f}, lowest {worst:.3f}. "
           f"For the table to read 1.5× in the worst of these runs the check must read {1.5 / worst:.2f}×: a guard "
           f"band of {100 * (1 / worst - 1):.0f}% over a 1.5× bound."]
    return md


if __name__ == "__main__":
    main()
