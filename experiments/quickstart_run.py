"""Run (or resume) the default quickstart and keep its table, report and figures as results.

    python experiments/quickstart_run.py --out runs/quickstart
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from donna_nas.quickstart import QuickstartConfig, run_quickstart, table_markdown

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/quickstart")
    args = ap.parse_args()
    out = Path(args.out)
    result = run_quickstart(out, QuickstartConfig.small())
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(out / "table.csv", RESULTS / "quickstart.csv")
    for name in ("pareto.png", "depth_searched.png", "depth_teacher.png"):
        if (out / "plots" / name).is_file():
            shutil.copyfile(out / "plots" / name, RESULTS / f"quickstart_{name}")
    const = json.loads((out / "teacher" / "metrics.json").read_text())["constant_depth_baseline"]
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    timings = result["timings"]
    md = ["# Quickstart (default scale)", "",
          f"Command: `donna-nas quickstart --out {args.out}` (recorded by `python experiments/quickstart_run.py "
          f"--out {args.out}`)  ",
          f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()} 2-core CPU, "
          f"torch default threads; other jobs shared the cores during part of the run.  ",
          f"Total time: {sum(timings.values()):.0f} s (target ≤ 15 min).", "",
          table_markdown(result["rows"]),
          f"Constant-depth predictor on the same test split: Sq Rel {const['sq_rel']:.4f}, "
          f"abs_rel {const['abs_rel']:.4f}, δ<1.25 {const['a1']:.3f}.", "",
          f"Selected: `{selected['arch']}` ({selected['params'] / 1e6:.2f}M encoder params, "
          f"{selected['latency_ms']:.2f} ms INT8 encoder latency from the table).", "",
          "| stage | seconds |", "|---|---|", *[f"| {k} | {v:.0f} |" for k, v in timings.items()], "",
          "Figures: `quickstart_pareto.png`, `quickstart_depth_searched.png`, `quickstart_depth_teacher.png`."]
    (RESULTS / "quickstart.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
