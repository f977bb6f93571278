"""``report.md`` for a depth run: metrics table and a PNG grid (input | predicted depth | ground truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from donna_nas.runtime.io import atomic_path, write_text_atomic

__all__ = ["write_report", "metrics_table"]

_HEAD = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def _baseline_rows(result: dict) -> dict[str, dict[str, float]]:
    names = {"constant": "constant depth (median-scaled, looks at no image)",
             "prior": "per-pixel prior (mean training depth per pixel, median-scaled, looks at no image)"}
    base = result.get("baselines") or {"constant": result["constant_depth_baseline"]}
    return {names.get(k, k): v for k, v in base.items()}


def _verdict(result: dict) -> str:
    beats = result.get("beats_baselines", {})
    if not beats:
        return ""
    lost = [k for k, v in beats.items() if not v]
    if not lost:
        return "The model beats every baseline on abs_rel and Sq Rel."
    return ("**The model does not beat the " + " and the ".join(lost) + " baseline"
            + ("s" if len(lost) > 1 else "") + " on both abs_rel and Sq Rel: it has not learned depth from the image.**")


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table, one row per named metric dict."""
    lines = ["| model | " + " | ".join(_HEAD) + " |", "|---|" + "---:|" * len(_HEAD)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in _HEAD) + " |")
    return "\n".join(lines)


def _grid_png(path: Path, images: np.ndarray, disps: np.ndarray, gts: Any, n: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int)
    fig, axes = plt.subplots(len(idx), 3, figsize=(12, 1.6 * len(idx) + 0.6), squeeze=False)
    for r, i in enumerate(idx):
        gt = np.asarray(gts[i], dtype=np.float32)
        axes[r, 0].imshow(images[i])
        depth = 1.0 / disps[i]
        lo, hi = np.percentile(depth, [5, 95])
        axes[r, 1].imshow(depth, cmap="magma_r", vmin=lo, vmax=max(hi, lo + 1e-6))
        show = np.ma.masked_where(gt <= 0, gt)
        axes[r, 2].imshow(show, cmap="magma_r", vmin=0, vmax=80, interpolation="nearest")
        for c, t in enumerate(("input", "predicted depth (up to scale)", "ground truth (velodyne, m)")):
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(t, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def write_report(run: Path, result: dict, images: np.ndarray, disps: np.ndarray, gts: Any, cfg: Any, info: dict) -> Path:
    run = Path(run)
    (run / "plots").mkdir(exist_ok=True)
    _grid_png(run / "plots" / "depth_grid.png", images, disps, gts)
    what = "X-Distill" if cfg.xdistill else "Monodepth2"
    text = f"""# Depth run {run.name}

{what} self-supervised training, backbone `{cfg.backbone}`, {cfg.height}x{cfg.width}, {info.get('steps', '?')} steps
(batch {cfg.batch}, lr {cfg.lr}, decoder activation {cfg.act}), depth network {info['params']:,} parameters.

Eigen protocol on {result['frames']} test frames of `{result['data']}` (Garg crop, 1e-3 < gt < 80 m,
per-image median scaling, per-image mean of the metrics).

{metrics_table({what: result['metrics'], **_baseline_rows(result)})}

{_verdict(result)}

![input | predicted depth | ground truth](plots/depth_grid.png)
"""
    write_text_atomic(run / "report.md", text)
    return run / "report.md"
