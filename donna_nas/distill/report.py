"""``RUN/report.md``: block-quality heat map, ranking checks, predictor scatter and phase timings."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from donna_nas.runtime.io import write_text_atomic

__all__ = ["write_report"]


def _f(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def write_report(run: Path, space, config, quality: pd.DataFrame, rank: pd.DataFrame | None,
                 evaluation: list[dict[str, Any]], timings: dict[str, Any]) -> Path:
    lines = [f"# build-supernet report: space `{space.name}`", ""]
    if config.teacher_weights:
        weights = config.teacher_weights
    elif Path(str(config.teacher)).is_dir():
        weights = f"trained, from the depth run `{config.teacher}`"
    else:
        weights = f"random init, seed {config.seed}"
    lines += [f"Teacher `{config.teacher}` (weights: {weights}), "
              f"BKD at {config.resolved_size(space)[0]}x{config.resolved_size(space)[1]}, "
              f"{config.train_frames} training / {config.val_frames} held-out frames requested, "
              f"{config.bkd_steps} steps per block supernet, task `{config.task}`.", ""]
    lines += ["## Block quality (held-out NSR)", "", "![block quality](plots/block_quality.png)", "",
              "| block | choices | best NSR | best choice | median NSR | worst NSR |",
              "|---|---|---|---|---|---|"]
    for b, d in quality.groupby("block", sort=False):
        best = d.loc[d["nsr"].idxmin()]
        lines.append(f"| {b} | {len(d)} | {best['nsr']:.4f} | `{best['choice']}` | "
                     f"{d['nsr'].median():.4f} | {d['nsr'].max():.4f} |")
    lines.append("")
    if rank is not None:
        lines += ["## Shared weights vs trained alone", "",
                  f"{len(rank)} choices of block {rank['block'].iloc[0]} trained alone for "
                  f"{config.rank_check_steps or config.bkd_steps} steps; Kendall τ between their NSR and "
                  f"the shared-weight NSR: **{_f(rank.attrs.get('kendall_tau'))}**", "",
                  "| choice | NSR shared | NSR alone |", "|---|---|---|"]
        lines += [f"| `{r.choice}` | {r.nsr_shared:.4f} | {r.nsr_alone:.4f} |" for r in rank.itertuples()]
        lines.append("")
    if evaluation:
        lines += ["## Accuracy predictor", "", "![predictor](plots/predictor.png)", "",
                  "| model | CV Kendall τ (train archs) | Kendall τ held-out archs | CV RMSE |",
                  "|---|---|---|---|"]
        lines += [f"| {e['model']} | {_f(e['cv_tau'])} | {_f(e['test_tau'])} | {_f(e['cv_rmse'], 4)} |"
                  for e in evaluation]
        lines += ["", "`predictor.json` holds ridge_nsr (the additive model the exact search solver uses); "
                  "training pairs are in `tables/predictor_train.csv`.", ""]
        pj = Path(run) / "predictor.json"
        if pj.is_file():
            from donna_nas.predictor.quality import PredictorQuality

            q = PredictorQuality.from_file(pj)
            lines += [f"**{q.warning()}**" if q.warning() else f"Selected predictor (ridge_nsr): {q.describe()}.", ""]
    lines += ["## Time per phase", "", "| phase | seconds (this invocation) |", "|---|---|"]
    last = timings["invocations"][-1] if timings.get("invocations") else {}
    lines += [f"| {k[:-2]} | {v:.1f} |" for k, v in last.items()]
    lines += ["", "Summed job time (all invocations, resume-invariant): "
              + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in timings.get("job_seconds", {}).items()), ""]
    path = Path(run) / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
