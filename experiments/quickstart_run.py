"""Run (or resume) the default quickstart (on the shipped teacher) and keep its table, report and
figures as results (``experiments/results/quickstart.{md,csv}``).

    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart
    OMP_NUM_THREADS=1 python experiments/quickstart_run.py --out runs/quickstart_trained --train-teacher
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

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/quickstart")
    ap.add_argument("--train-teacher", action="store_true", help="the path that trains both teachers first")
    args = ap.parse_args()
    out = Path(args.out)
    result = run_quickstart(out, QuickstartConfig.small(args.train_teacher))
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(out / "quickstart_table.csv", RESULTS / "quickstart.csv")
    for name in ("pareto.png", "depth_searched.png", "depth_teacher.png"):
        if (out / "plots" / name).is_file():
            shutil.copyfile(out / "plots" / name, RESULTS / f"quickstart_{name}")
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    flag = " --train-teacher" if args.train_teacher else ""
    timings = result["timings"]
    md = ["# Quickstart (default scale)", "",
          f"Command: `donna-nas quickstart --out {args.out}{flag}` (recorded by `python "
          f"experiments/quickstart_run.py --out {args.out}{flag}`)  ",
          f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, {os.environ.get('OMP_NUM_THREADS', '1')} thread(s).  ",
          f"Total time: {sum(timings.values()):.0f} s (target ≤ 15 min).", "",
          table_markdown(result["rows"]),
          *selection_markdown(selected, result["rows"]), "",
          "| stage | seconds |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()], "",
          "Figures: `quickstart_pareto.png`, `quickstart_depth_searched.png`, `quickstart_depth_teacher.png`."]
    (RESULTS / "quickstart.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
