"""`donna-nas quickstart`: the whole pipeline on the embedded synthetic world."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from donna_nas.cli.common import config_help, given, threads_option, with_default

# Options that mirror a QuickstartConfig field default to None: the config's default (in --help).
_QUICKSTART = "donna_nas.quickstart:QuickstartConfig"


def _help(name: str, text: str = "") -> str:
    return config_help(_QUICKSTART, name, text)


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)


def quickstart_cmd(
    out: Path = typer.Option(Path("runs/quickstart"), help="Output folder (resumes if it exists)."),
    tiny: bool = typer.Option(False, "--tiny", help="Toy scale (about a minute on 2 cores with one thread): a smoke test."),
    teacher: Optional[str] = typer.Option(
        None, "--teacher", help=_help("teacher", "Shipped depth model to search under (`donna-nas models "
                                      "list`); with --train-teacher: resnet18 or resnet50 to train.")),
    seg_teacher: Optional[str] = typer.Option(
        None, "--seg-teacher", help=_help("seg_teacher", "Shipped segmentation teacher for X-Distill.")),
    train_teacher: bool = typer.Option(
        False, "--train-teacher", help="Train the segmentation and depth teachers here first (on a "
                                       "96x320 world; --tiny: 64x192) instead of using the shipped ones."),
    latency_table: Optional[str] = typer.Option(
        None, "--latency-table",
        help="Search against this latency table (e.g. measured on a phone) instead of this CPU."),
    speedup: Optional[float] = typer.Option(
        None, "--speedup", help=_help("speedup", "Select the best predicted architecture at least X "
                                      "times faster than the teacher on the latency source (the "
                                      "teacher's encoder is timed the same way).")),
    max_latency_ms: Optional[float] = typer.Option(
        None, "--max-latency-ms", help="Latency bound in ms instead of --speedup."),
    target_fps: Optional[float] = typer.Option(
        None, "--target-fps", help="Latency bound of 1000/FPS ms instead of --speedup."),
    teacher_latency_ms: Optional[float] = typer.Option(
        None, "--teacher-latency-ms", help="The teacher's latency (ms) for --speedup, instead of "
                                           "measuring it (needed with a table that has no teacher row)."),
    max_params_ratio: Optional[float] = typer.Option(
        None, "--max-params-ratio", help="Extra constraint: model params (decoder included) ≤ this "
                                         "share of the teacher's (off by default)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", help=_help("workers", "Processes for build-supernet's independent jobs "
                                      "(one torch thread each); the result does not depend on it.")),
    final_threads: Optional[int] = typer.Option(
        None, "--final-threads", help=with_default("Torch threads of the final finetune, the one long stage "
                                                   "that runs alone.", "as --workers")),
    threads: Optional[int] = threads_option(),
) -> None:
    """data (the shipped teacher's world) → shipped depth teacher → build-supernet → search
    (latency target) → finetune (distillation + X-Distill) → export fp32/INT8 →
    OUT/quickstart_table.csv and OUT/report.md."""
    import dataclasses

    from donna_nas.cli import console
    from donna_nas.cli.common import check_out_dir
    from donna_nas.quickstart import QuickstartConfig, run_quickstart, table_markdown
    from donna_nas.runtime.threads import set_threads

    set_threads(threads)
    check_out_dir(out)
    cfg = QuickstartConfig.tiny(train_teacher) if tiny else QuickstartConfig.small(train_teacher)
    opts = given(teacher=teacher, seg_teacher=seg_teacher, speedup=speedup, max_latency_ms=max_latency_ms, target_fps=target_fps,
                 teacher_latency_ms=teacher_latency_ms, max_params_ratio=max_params_ratio,
                 workers=workers, final_threads=final_threads)
    if speedup is None and (max_latency_ms is not None or target_fps is not None):
        opts["speedup"] = None  # another latency target replaces the default speedup
    cfg = dataclasses.replace(cfg, **opts)
    cfg.latency_target()  # one line now for a bad combination, not after the training stages
    cfg = cfg.resolved()  # an unknown model name or a size the teacher was not trained at: one line now
    result = run_quickstart(out, cfg, latency_table=latency_table)
    console.print(table_markdown(result["rows"]), highlight=False)
    console.print(f"total {sum(result['timings'].values()):.0f} s; table: {out / 'quickstart_table.csv'}; "
                  f"report: {out / 'report.md'}")
