"""`donna-nas quickstart`: the whole pipeline on the embedded synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from donna_nas.runtime.threads import threads_option


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)


def quickstart_cmd(
    out: Path = typer.Option(Path("runs/quickstart"), help="Output folder (resumes if it exists)."),
    tiny: bool = typer.Option(False, "--tiny", help="Toy scale (about a minute on 2 cores with one thread): a smoke test."),
    latency_table: Optional[str] = typer.Option(
        None, "--latency-table",
        help="Search against this latency table (e.g. measured on a phone) instead of this CPU."),
    threads: Optional[int] = threads_option(),
) -> None:
    """data → depth teacher (X-Distill) → build-supernet → search → finetune → export fp32/INT8
    → Table-1-style table and OUT/report.md."""
    from donna_nas.cli import console
    from donna_nas.cli.common import check_out_dir
    from donna_nas.quickstart import QuickstartConfig, run_quickstart, table_markdown
    from donna_nas.runtime.threads import set_threads

    set_threads(threads)
    check_out_dir(out)
    cfg = QuickstartConfig.tiny() if tiny else QuickstartConfig.small()
    result = run_quickstart(out, cfg, latency_table=latency_table)
    console.print(table_markdown(result["rows"]), highlight=False)
    console.print(f"total {sum(result['timings'].values()):.0f} s; report: {out / 'report.md'}")
