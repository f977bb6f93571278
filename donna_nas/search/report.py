"""Search outputs: front and trial tables, the Pareto plot, ``selected.json`` and a terminal summary.

``selected.json`` is what ``finetune --backbone RUN`` reads: the chosen architecture string plus
the space fingerprint, its predicted metric and costs, the constraints and how it was found.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donna_nas.runtime.io import atomic_path, fsync_dir, write_json_atomic, write_text_atomic
from donna_nas.search.api import SearchResult
from donna_nas.search.objectives import Evaluation
from donna_nas.space.space import SearchSpace

PARETO_COLUMNS = ("rank", "arch", "predicted_metric", "latency_ms", "params", "macs")
TRIAL_COLUMNS = ("index", "arch", "predicted_metric", "latency_ms", "params", "macs", "feasible",
                 "on_front", "source")


@dataclass(frozen=True)
class Reference:
    """A model to show on the plot (e.g. a ResNet teacher): latency, and metric when known."""

    name: str
    latency_ms: float
    metric: float | None = None


def _csv_text(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def pareto_rows(front: list[Evaluation]) -> list[list[Any]]:
    return [[i, e.arch, repr(e.metric), repr(e.latency_ms), e.params, e.macs]
            for i, e in enumerate(front)]


def selected_json(result: SearchResult, space: SearchSpace, latency_desc: str,
                  info: dict[str, Any] | None = None) -> dict[str, Any]:
    sel = result.selected
    assert sel is not None
    return {
        "arch": sel.arch, "space": space.name, "space_fingerprint": space.fingerprint(),
        "predicted_metric": sel.metric, "metric_name": result.metric_name,
        "direction": result.direction, "latency_ms": sel.latency_ms, "params": sel.params,
        "macs": sel.macs, "constraints": result.constraints.to_json(), "method": result.method,
        "latency_source": latency_desc, "front_size": len(result.front),
        "hv_ratio_vs_exact": result.hv_ratio,
    } | dict(info or {})


def write_outputs(out_dir: str | Path, result: SearchResult, space: SearchSpace,
                  latency_desc: str = "", references: list[Reference] | None = None,
                  info: dict[str, Any] | None = None, latency_axis: str = "latency (ms)",
                  quality: Any = None) -> dict[str, Path]:
    """Write ``tables/pareto.csv``, ``tables/trials.csv``, ``plots/pareto.png`` and (when an
    architecture meets the constraints) ``selected.json`` under ``out_dir``; when none does, an
    earlier ``selected.json`` there is removed. ``info`` is added to ``selected.json`` (the
    latency bound, the predictor's τ, ...); ``latency_axis`` labels the plot's x-axis with where
    the latencies came from; ``quality`` (a ``PredictorQuality``) puts τ in the plot's title."""
    out = Path(out_dir)
    paths = {"pareto": out / "tables" / "pareto.csv", "trials": out / "tables" / "trials.csv",
             "plot": out / "plots" / "pareto.png", "selected": out / "selected.json"}
    write_text_atomic(paths["pareto"], _csv_text(PARETO_COLUMNS, pareto_rows(result.front)))
    on_front = {e.arch for e in result.front}
    rows = [[i, e.arch, repr(e.metric), repr(e.latency_ms), e.params, e.macs, int(ok),
             int(e.arch in on_front), result.source]
            for i, (e, ok) in enumerate(zip(result.evaluated, result.feasible))]
    write_text_atomic(paths["trials"], _csv_text(TRIAL_COLUMNS, rows))
    plot_front(paths["plot"], result, references or [], latency_axis, quality)
    if result.selected is not None:
        write_json_atomic(paths["selected"], selected_json(result, space, latency_desc, info))
    else:
        # a selection of an earlier search must not outlive this one: finetune --backbone RUN
        # and the quickstart's stage check would read it as this search's choice
        stale = paths.pop("selected")
        if stale.is_file():
            stale.unlink()
            fsync_dir(stale.parent)
    return paths


def metric_span_note(result: SearchResult) -> tuple[str, bool]:
    """(text, tiny) describing how far the predicted metric spreads over the front: the plot's
    y-axis is autoscaled, so a front that varies by 0.02% looks as steep as one that varies by 50%.
    ``tiny``: the spread is under 1% of the metric's magnitude."""
    ys = [e.metric for e in (result.front or result.evaluated)]
    if not ys:
        return "", False
    span = max(ys) - min(ys)
    mid = max(abs(max(ys)), abs(min(ys)), 1e-12)
    pct = 100.0 * span / mid
    where = "the front" if result.front else "the evaluated architectures"
    tiny = pct < 1.0
    only = "only " if tiny else ""
    return f"predicted {result.metric_name} spans {only}{span:.3g} ({pct:.2g}%) over {where}", tiny


def plot_front(path: Path, result: SearchResult, references: list[Reference],
               latency_axis: str = "latency (ms)", quality: Any = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    ev = result.evaluated
    if ev:
        ok = result.feasible
        ax.scatter([e.latency_ms for e, f in zip(ev, ok) if f], [e.metric for e, f in zip(ev, ok) if f],
                   s=4, c="0.6", alpha=0.5, lw=0,
                   label=f"{'trials' if result.source == 'trial' else 'random sample'} ({len(ev)})")
        bad = [e for e, f in zip(ev, ok) if not f]
        if bad:
            ax.scatter([e.latency_ms for e in bad], [e.metric for e in bad], s=4, c="0.85", lw=0,
                       label="violates constraints")
    if result.exact and result.method != "exact":
        ax.step([e.latency_ms for e in result.exact], [e.metric for e in result.exact],
                where="post", c="tab:blue", lw=1, label=f"exact front ({len(result.exact)})")
    if result.front:
        ax.step([e.latency_ms for e in result.front], [e.metric for e in result.front],
                where="post", c="tab:red", lw=1.2)
        ax.scatter([e.latency_ms for e in result.front], [e.metric for e in result.front], s=10,
                   c="tab:red", label=f"{result.method} front ({len(result.front)})", zorder=3)
    if result.selected is not None:
        ax.scatter([result.selected.latency_ms], [result.selected.metric], marker="*", s=160,
                   c="gold", edgecolors="k", zorder=4, label="selected")
    if result.constraints.max_latency_ms is not None:
        ax.axvline(result.constraints.max_latency_ms, c="k", ls=":", lw=1,
                   label=f"latency bound {result.constraints.max_latency_ms:.3g} ms")
    for r in references:
        if r.metric is None:
            ax.axvline(r.latency_ms, c="tab:green", ls="--", lw=1)
            ax.annotate(r.name, (r.latency_ms, 0.98), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=8, color="tab:green")
        else:
            ax.scatter([r.latency_ms], [r.metric], marker="D", c="tab:green", zorder=4)
            ax.annotate(r.name, (r.latency_ms, r.metric), fontsize=8, color="tab:green",
                        xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(latency_axis)
    better = "lower" if result.direction == "minimize" else "higher"
    span, tiny = metric_span_note(result)
    ax.set_ylabel(f"predicted {result.metric_name} ({better} is better; axis autoscaled)")
    title = f"Pareto front: {result.method}"
    if result.hv_ratio is not None:
        title += f", HV ratio vs exact {result.hv_ratio:.4f}"
    lines = [title]
    if span:
        lines.append(span + ("; differences this small are unlikely to be meaningful" if tiny else ""))
    if quality is not None:
        lines.append(" ".join(filter(None, (quality.describe(), quality.verdict()))))
    ax.set_title("\n".join(lines), fontsize=9, color="tab:red" if tiny or (
        quality is not None and quality.reliable is False) else "black")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def print_summary(console, result: SearchResult, paths: dict[str, Path] | None = None,
                  max_rows: int = 15, bound: Any = None, quality: Any = None,
                  selected_latency: str = "") -> None:
    """A rich table of the front (thinned to ``max_rows``) plus the headline numbers: the latency
    bound, the selection (with how its latency was obtained) and the predictor's τ, with the
    warning line when it is below 0.5."""
    from rich.table import Table

    t = Table(title=f"Pareto front ({result.method}, {len(result.front)} architectures)")
    t.add_column("#", justify="right")
    t.add_column(f"pred. {result.metric_name}", justify="right")
    t.add_column("latency ms", justify="right")
    t.add_column("encoder params M", justify="right")
    t.add_column("MACs G", justify="right")
    t.add_column("architecture", overflow="fold")
    front = result.front
    if len(front) > max_rows:
        step = (len(front) - 1) / (max_rows - 1)
        idx = sorted({round(k * step) for k in range(max_rows)})
    else:
        idx = list(range(len(front)))
    sel = result.selected.arch if result.selected else None
    for i in idx:
        e = front[i]
        style = "bold yellow" if e.arch == sel else None
        t.add_row(str(i), f"{e.metric:.4f}", f"{e.latency_ms:.2f}", f"{e.params / 1e6:.2f}",
                  f"{e.macs / 1e9:.2f}", e.arch, style=style)
    console.print(t)
    lines = []
    if result.method == "nsga2":
        lines.append(f"NSGA-II: {len(result.evaluated)} trials in the study, "
                     f"{result.evaluations_this_call} this run ({result.evals_per_s:.0f}/s)")
    if result.exact_seconds is not None:
        lines.append(f"exact front: {len(result.exact or [])} architectures in {result.exact_seconds:.2f} s")
    if result.hv_ratio is not None:
        lines.append(f"hypervolume ratio NSGA-II / exact: {result.hv_ratio:.4f}")
    if bound is not None:
        lines.append(f"bound: {bound.describe()}")
    if sel:
        s = result.selected
        how = f", {selected_latency}" if selected_latency else ""
        lines.append(f"selected: {s.arch}  (predicted {result.metric_name} {s.metric:.4f}, "
                     f"{s.latency_ms:.2f} ms{how}, {s.params / 1e6:.2f}M encoder params)")
    else:
        lines.append("no architecture meets the constraints; relax --max-latency-ms / --max-params")
    span, tiny = metric_span_note(result)
    if tiny:
        lines.append(f"note: {span}")
    if quality is not None:
        lines.append(quality.warning() or quality.describe())
    lines.extend(result.notes)
    for k, p in (paths or {}).items():
        lines.append(f"{k}: {p}")
    for line in lines:
        console.print(line, highlight=False)
