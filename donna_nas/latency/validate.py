"""Does the sum of a table's op rows predict a whole model's measured latency?

Whole sampled architectures are exported and measured on this machine, next to the table's sum
(each architecture's missing ops are measured right before the architecture itself, so both
see similar machine load). Plain additivity misses fusion across layers, per-call overhead and
memory effects, so a linear recalibration ``measured ≈ a · predicted + b`` is fitted on part of
the architectures and judged on the held-out rest.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from donna_nas.errors import UserError
from donna_nas.latency.ort import OrtMeasurer
from donna_nas.latency.cached import CachedMeasurer
from donna_nas.runtime.io import atomic_path, write_json_atomic


@dataclass
class ArchResult:
    arch: str
    predicted_ms: float
    measured_ms: float
    measured_std_ms: float
    n_ops: int
    split: str  # "fit" or "holdout"
    corrected_ms: float = float("nan")

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def corrected_error_pct(self) -> float:
        return 100.0 * (self.corrected_ms - self.measured_ms) / self.measured_ms


@dataclass
class Correction:
    """``measured ≈ scale · predicted + offset_ms`` (least squares on the fit split)."""

    scale: float = 1.0
    offset_ms: float = 0.0

    def __call__(self, predicted: float) -> float:
        return self.scale * predicted + self.offset_ms


@dataclass
class ValidationReport:
    results: list[ArchResult]
    correction: Correction
    summary: dict = field(default_factory=dict)


def within(errors: list[float], pct: float = 10.0) -> float:
    return float(np.mean([abs(e) <= pct for e in errors])) if errors else float("nan")


def fit_correction(results: list[ArchResult]) -> Correction:
    fit = [r for r in results if r.split == "fit"]
    if len(fit) < 2:
        return Correction()
    x = np.array([r.predicted_ms for r in fit])
    y = np.array([r.measured_ms for r in fit])
    # minimise relative error (what ±10% judges): weight each point by 1/measured
    wts = 1.0 / y
    a = np.stack([x * wts, wts], 1)
    scale, offset = np.linalg.lstsq(a, y * wts, rcond=None)[0]
    return Correction(float(scale), float(offset))


def summarize(results: list[ArchResult], corr: Correction) -> dict:
    for r in results:
        r.corrected_ms = corr(r.predicted_ms)
    raw = [r.error_pct for r in results]
    hold = [r for r in results if r.split == "holdout"]
    return {
        "archs": len(results),
        "fit_archs": len(results) - len(hold),
        "holdout_archs": len(hold),
        "raw_within_10pct": within(raw),
        "raw_median_abs_err_pct": float(np.median(np.abs(raw))),
        "raw_mean_err_pct": float(np.mean(raw)),
        "holdout_raw_within_10pct": within([r.error_pct for r in hold]),
        "holdout_corrected_within_10pct": within([r.corrected_error_pct for r in hold]),
        "holdout_corrected_median_abs_err_pct": (float(np.median(np.abs(
            [r.corrected_error_pct for r in hold]))) if hold else float("nan")),
        "correction_scale": corr.scale,
        "correction_offset_ms": corr.offset_ms,
    }


def validate(space, cache: CachedMeasurer, archs: int, input_size: tuple[int, int] | None = None,
             seed: int = 1000, holdout: float = 0.5, repeats: int | None = None,
             progress: bool = True) -> ValidationReport:
    """Measure ``archs`` sampled architectures whole and compare with the table's sum."""
    if archs < 1:
        raise UserError("--archs must be at least 1")
    from donna_nas.nn.builder import build_encoder

    size = tuple(input_size or space.input_size)
    measurer: OrtMeasurer = cache.measurer
    n_fit = archs - int(round(archs * holdout)) if archs > 1 else archs
    results = []
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    with Progress(TextColumn("validating archs"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as bar:
        task = bar.add_task("archs", total=archs)
        for i in range(archs):
            arch = space.sample(seed + i)
            predicted = cache.arch_latency(space, arch, size, include_fixed=False)
            model = build_encoder(space, arch, size)
            t = measurer.measure_module(model, (1, space.in_channels, *size), image=True,
                                        repeats=repeats)
            results.append(ArchResult(arch.encode(), predicted, t.median_ms, t.std_ms,
                                      len(space.ops(arch, size)), "fit" if i < n_fit else "holdout"))
            bar.advance(task)
    corr = fit_correction(results)
    return ValidationReport(results, corr, summarize(results, corr))


def write_report(report: ValidationReport, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Per-arch CSV, summary JSON and a predicted-vs-measured scatter PNG."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "validation.csv", "json": out_dir / "validation_summary.json",
             "png": out_dir / "validation_scatter.png"}
    cols = ["arch", "split", "n_ops", "predicted_ms", "measured_ms", "measured_std_ms",
            "error_pct", "corrected_ms", "corrected_error_pct"]
    with atomic_path(paths["csv"]) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in report.results:
            d = asdict(r) | {"error_pct": r.error_pct, "corrected_error_pct": r.corrected_error_pct}
            w.writerow([f"{d[c]:.4f}" if isinstance(d[c], float) else d[c] for c in cols])
    write_json_atomic(paths["json"], report.summary | {"correction": asdict(report.correction)})
    scatter(report, paths["png"], title)
    return paths


def scatter(report: ValidationReport, path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report.results
    m = [r.measured_ms for r in res]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo, hi = min(m + [r.predicted_ms for r in res]) * 0.85, max(m + [r.predicted_ms for r in res]) * 1.15
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=1, label="y = x")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10%")
    ax.scatter(m, [r.predicted_ms for r in res], s=14, label="sum of op rows")
    hold = [r for r in res if r.split == "holdout"]
    if hold:
        ax.scatter([r.measured_ms for r in hold], [r.corrected_ms for r in hold], s=14, marker="x",
                   label="recalibrated (held-out)")
    ax.set_xlabel("measured whole model (ms)")
    ax.set_ylabel("predicted (ms)")
    s = report.summary
    ax.set_title(title or f"within ±10%: raw {s['raw_within_10pct']:.0%}, "
                          f"recalibrated held-out {s['holdout_corrected_within_10pct']:.0%}",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


