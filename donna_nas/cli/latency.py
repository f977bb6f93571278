"""`donna-nas latency ...`: measure, validate, export for phones, import phone timings, look up."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Latency tables: measure ops on this CPU with ONNX Runtime, validate "
                       "additivity, export ops for phones and import their timings.",
                  no_args_is_help=True)

SPACE = typer.Option(..., "--space", help="Space YAML file or shipped space name.")
SIZE = typer.Option(None, "--size", help="Input size HxW (default: the space's input_size).")
CLOCK = typer.Option("auto", help="cpu: the computing thread's CPU time (steady on a shared "
                                   "machine; needs --threads 1); wall: wall clock; auto: cpu "
                                   "with 1 thread, else wall.")


def _size(space, size: Optional[str]) -> tuple[int, int]:
    from donna_nas.cli.common import parse_size

    return parse_size(size) if size else tuple(space.input_size)


@app.command("measure")
def measure(space_file: str = SPACE, size: Optional[str] = SIZE,
            precision: str = typer.Option("fp32", help="fp32 or int8 (static QDQ)."),
            out: Path = typer.Option(..., "--out", help="Table CSV; existing rows are kept (resume)."),
            archs: Optional[int] = typer.Option(None, help="Only the ops of K sampled architectures "
                                                           "(default: every op of the space)."),
            seed: int = typer.Option(0, help="First sampling seed for --archs."),
            threads: int = typer.Option(1, help="ONNX Runtime intra-op threads."),
            warmup: int = typer.Option(5), repeats: int = typer.Option(20),
            rounds: int = typer.Option(3, help="Timed runs are split into rounds; the lowest round "
                                               "median is kept."),
            time_budget: Optional[float] = typer.Option(None, help="Stop after this many seconds "
                                                                   "(rerun to resume)."),
            device: Optional[str] = typer.Option(None, help="Device name stored in the table "
                                                            "(default: this CPU's model name)."),
            clock: str = CLOCK) -> None:
    """Export each op instance to ONNX, time it in ONNX Runtime, and write table rows."""
    from donna_nas.cli import console
    from donna_nas.latency import LookupTable, OrtMeasurer
    from donna_nas.latency.blocks import ops_for
    from donna_nas.space import load_space

    from donna_nas.cli.common import check_out_file, check_writable

    check_out_file(out)
    check_writable(out.parent)  # before the timings, not at their first save
    space = load_space(space_file)
    hw = _size(space, size)
    ops = ops_for(space, hw, archs, seed)
    m = OrtMeasurer(precision, threads, warmup, repeats, device, rounds=rounds, clock=clock)
    table = LookupTable.from_csv(out) if out.exists() else None
    have = sum(1 for op in ops if table is not None and op.key in table)
    console.print(f"{len(ops):,} op instances needed ({have:,} already in {out}); "
                  f"{m.precision}, {m.threads} thread(s), device {m.device!r}")
    result = m.measure_ops(ops, table, out, time_budget_s=time_budget)
    left = sum(1 for op in ops if op.key not in result)
    console.print(f"{out}: {len(result):,} rows" + (f"; {left:,} ops still to measure "
                                                   f"(rerun the same command to resume)" if left else ""))


@app.command("validate")
def validate(space_file: str = SPACE, table: Path = typer.Option(..., "--table"),
             size: Optional[str] = SIZE, archs: int = typer.Option(50),
             holdout: float = typer.Option(0.5, help="Share of archs held out from the correction fit."),
             seed: int = typer.Option(1000), repeats: int = typer.Option(20),
             threads: int = typer.Option(1), warmup: int = typer.Option(5),
             out_dir: Path = typer.Option(Path("latency_validation"), "--out-dir"),
             clock: str = CLOCK) -> None:
    """Measure whole sampled architectures on this CPU and compare with the table's sum.

    Ops the table lacks are measured first (and added to it), so the table must be one measured
    on this machine with the same precision."""
    from donna_nas.cli import console
    from donna_nas.errors import UserError
    from donna_nas.latency import CachedMeasurer, LookupTable, OrtMeasurer
    from donna_nas.latency.validate import validate as run_validate
    from donna_nas.latency.validate import write_report
    from donna_nas.space import load_space

    space = load_space(space_file)
    hw = _size(space, size)
    existing = LookupTable.from_csv(table) if table.exists() else None
    precision = existing.precision if existing else "fp32"
    if precision not in ("fp32", "int8"):
        raise UserError(f"{table}: precision {precision!r} cannot be measured here (fp32 or int8)")
    m = OrtMeasurer(precision, threads, warmup, repeats, clock=clock)
    if existing is not None and existing.device != m.device:
        raise UserError(f"{table}: measured on {existing.device!r}, but validate measures whole "
                        f"models on this machine ({m.device!r}); give a table measured here")
    cache = CachedMeasurer(m, table)
    report = run_validate(space, cache, archs, hw, seed=seed, holdout=holdout, repeats=repeats)
    paths = write_report(report, out_dir)
    s = report.summary
    console.print(f"{s['archs']} archs: raw within ±10% {s['raw_within_10pct']:.0%}, median |err| "
                  f"{s['raw_median_abs_err_pct']:.1f}%; recalibrated (x{s['correction_scale']:.3f} "
                  f"{s['correction_offset_ms']:+.2f} ms, fitted on {s['fit_archs']}) on "
                  f"{s['holdout_archs']} held-out: within ±10% {s['holdout_corrected_within_10pct']:.0%}")
    console.print(f"wrote {paths['csv']}, {paths['json']}, {paths['png']}")


@app.command("export-blocks")
def export_blocks(space_file: str = SPACE, size: Optional[str] = SIZE,
                  out: Path = typer.Option(..., "--out", help="Output folder."),
                  archs: Optional[int] = typer.Option(None, help="Only the ops of K sampled archs."),
                  seed: int = typer.Option(0),
                  precision: str = typer.Option("fp32", help="fp32 or int8 (static QDQ).")) -> None:
    """Write every op instance as a standalone ONNX file plus manifest.csv (for phone profiling)."""
    from donna_nas.cli import console
    from donna_nas.latency.blocks import export_blocks as run_export
    from donna_nas.latency.blocks import ops_for
    from donna_nas.space import load_space

    from donna_nas.cli.common import check_out_dir

    check_out_dir(out)
    space = load_space(space_file)
    ops = ops_for(space, _size(space, size), archs, seed)
    manifest = run_export(ops, out, precision)
    console.print(f"{len(ops):,} ONNX files in {out}; manifest {manifest}")


@app.command("import")
def import_(results: Path = typer.Argument(..., help="CSV of device timings: file (or op), "
                                                      "latency_ms[, std_ms]."),
            manifest: Path = typer.Option(..., "--manifest"),
            device: str = typer.Option(..., "--device", help="Device name, e.g. 'Pixel 7 (Tensor G2) CPU'."),
            runtime: str = typer.Option("device profiler", help="Runtime/tool that produced the timings."),
            out: Path = typer.Option(..., "--out")) -> None:
    """Turn timings measured on a device into a validated latency table."""
    from donna_nas.cli import console
    from donna_nas.latency.blocks import import_results, missing_from_results

    from donna_nas.cli.common import check_out_file

    check_out_file(out)
    table = import_results(results, manifest, device, out, runtime)
    left = missing_from_results(table, manifest)
    console.print(f"{out}: {len(table):,} rows for {device!r}"
                  + (f"; {len(left):,} manifest ops have no timing yet" if left else ""))


@app.command("lookup")
def lookup(space_file: str = SPACE, table: Path = typer.Option(..., "--table"),
           arch: str = typer.Option(..., "--arch", help="Architecture string."),
           size: Optional[str] = SIZE,
           no_fixed: bool = typer.Option(False, "--no-fixed", help="Leave out the table's fixed "
                                                                    "(head) rows.")) -> None:
    """Latency of one architecture from a table (sum of its op rows)."""
    from donna_nas.cli import console
    from donna_nas.latency import LookupTable
    from donna_nas.space import load_space

    space = load_space(space_file)
    t = LookupTable.from_csv(table)
    hw = _size(space, size)
    ms = t.arch_latency(space, space.decode(arch), hw, include_fixed=not no_fixed)
    console.print(f"{ms:.3f} ms on {t.device} ({t.precision}) at {hw[0]}x{hw[1]}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="latency")
