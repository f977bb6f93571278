"""`donna-nas search RUN`: Pareto search of predicted metric vs latency; a thin layer over
``donna_nas.search.search``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import typer

from donna_nas.cli.common import config_help, default_of, given
from donna_nas.errors import UserError

# Selection options mirror donna_nas.search.select.SelectionConfig (their defaults shown in --help).
_SELECTION = "donna_nas.search.select:SelectionConfig"


def _help(name: str, text: str = "") -> str:
    """``text`` plus the config's default when it has one (None: unset, nothing shown)."""
    return text if default_of(_SELECTION, name) is None else config_help(_SELECTION, name, text)


def parse_count(text: str | None, flag: str) -> int | None:
    """``3.5M``, ``800k``, ``2500000`` → an integer."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise UserError(f"{flag}: expected a number such as 3500000, 3.5M or 800k, got {text!r}")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    return int(round(float(m.group(1)) * scale))


def parse_reference(text: str):
    """``NAME=LATENCY_MS`` or ``NAME=LATENCY_MS:METRIC``."""
    from donna_nas.search.report import Reference

    m = re.fullmatch(r"\s*([^=]+?)\s*=\s*([0-9.eE+-]+)\s*(?::\s*([0-9.eE+-]+))?\s*", text)
    try:
        if not m:
            raise ValueError
        ms = float(m.group(2))
        metric = float(m.group(3)) if m.group(3) else None
        if not (math.isfinite(ms) and ms > 0) or (metric is not None and not math.isfinite(metric)):
            raise ValueError
        return Reference(m.group(1), ms, metric)
    except ValueError:
        raise UserError(f"--reference: expected NAME=LATENCY_MS or NAME=LATENCY_MS:METRIC with a latency "
                        f"above 0 and finite numbers, got {text!r}") from None


# the run wiring lives in the library; these names stay importable from here
from donna_nas.search.run import DEPLOYED_CONFIRM, DEPLOYED_GUARD, MEASURE_KINDS, load_inputs, resolve_table  # noqa: E402,F401


class NsgaProgress:
    """The NSGA-II progress callback: a bar on a terminal that stays when done, periodic plain
    lines (``DONNA_NAS_LOG_EVERY`` seconds, and at the end) when stdout is a pipe or a file.
    Started at the first trial, so an exact search shows no empty bar."""

    def __init__(self, console):
        self.console = console
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            from donna_nas.runtime.progress import LoggingProgress

            self.bar = LoggingProgress(TextColumn("[bold]NSGA-II trials"), BarColumn(),
                                       MofNCompleteColumn(), TimeElapsedColumn(),
                                       TimeRemainingColumn(), console=self.console, transient=False)
            self.bar.start()
            self.task = self.bar.add_task("NSGA-II trials", total=total)
        if done == 1 or done % 50 == 0 or done == total:
            self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def search_cmd(
    run: Optional[Path] = typer.Argument(
        None, help="Run directory (reads space.yaml and predictor.json, writes tables/, plots/, "
                   "studies/, selected.json); default: the current directory when it holds a "
                   "build-supernet run."),
    latency_table: Optional[str] = typer.Option(None, "--latency-table",
                                                help="Latency lookup table CSV (or shipped table name)."),
    measure: Optional[str] = typer.Option(None, "--measure",
                                          help="Measure latency with ONNX Runtime here: ort | ort-int8."),
    max_latency_ms: Optional[float] = typer.Option(
        None, "--max-latency-ms", help=_help("max_latency_ms", "Latency bound (ms) on the latency source.")),
    target_fps: Optional[float] = typer.Option(
        None, "--target-fps", help=_help("target_fps", "Latency bound of 1000/FPS ms.")),
    speedup: Optional[float] = typer.Option(
        None, "--speedup", help=_help("speedup", "Latency bound = the teacher's latency on the same "
                                      "source / X (ORT: the teacher's encoder is timed here; a table "
                                      "needs a model:NAME:h=H,w=W row or --teacher-latency-ms).")),
    teacher_latency_ms: Optional[float] = typer.Option(
        None, "--teacher-latency-ms", help=_help("teacher_latency_ms", "The teacher's latency (ms) for "
                                                 "--speedup, instead of measuring or looking it up.")),
    teacher: Optional[str] = typer.Option(
        None, "--teacher", help="Teacher for --speedup: resnet18 | resnet50 | a depth run "
                                "(default: the run's teacher.json)."),
    max_params: Optional[str] = typer.Option(
        None, "--max-params", help=_help("max_params", "Encoder params bound, e.g. 3.5M (an extra "
                                         "constraint; params do not select).")),
    method: str = typer.Option("auto", "--method", help="auto | exact | nsga2."),
    trials: int = typer.Option(2000, "--trials", help="NSGA-II: total trials of the study."),
    population: int = typer.Option(50, "--population", help="NSGA-II population size."),
    storage: Optional[str] = typer.Option(None, "--storage",
                                          help="optuna RDB URL (e.g. sqlite:///study.db, postgresql://...) "
                                               "shared by several workers, or a journal file path "
                                               "(default: the optuna journal RUN/studies/STUDY.log)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    objective: Optional[str] = typer.Option(None, "--objective",
                                            help="Third objective: params | macs."),
    predictor_file: Optional[str] = typer.Option(None, "--predictor",
                                                 help="Predictor JSON instead of RUN/predictor.json."),
    space_file: Optional[str] = typer.Option(None, "--space",
                                             help="Space YAML/name instead of RUN/space.yaml."),
    size: Optional[str] = typer.Option(None, "--size", help="Input size HxW (default: the space's)."),
    reference: list[str] = typer.Option([], "--reference",
                                        help="Model to plot: NAME=LATENCY_MS[:METRIC] (repeatable)."),
    study_name: Optional[str] = typer.Option(None, "--study-name",
                                             help="optuna study name (default: derived from the settings)."),
    measure_archs: int = typer.Option(30, "--measure-archs", min=1,
                                      help="--measure: time the ops of this many sampled architectures; "
                                           "the op latency model fitted on them covers the rest."),
    deployed_checks: int = typer.Option(
        0, "--deployed-checks", min=0,
        help="With --measure and a latency bound: time up to N candidates' whole deployed networks "
             "(depth: encoder + decoder, side by side with the teacher's) and select the best predicted "
             "one that meets the bound (0 = off; the quickstart uses 16)."),
    deployed_guard: float = typer.Option(
        DEPLOYED_GUARD, "--deployed-guard", min=0.0,
        help="--deployed-checks: a candidate must beat the bound by this fraction (timing-noise guard band)."),
    deployed_confirm: int = typer.Option(
        DEPLOYED_CONFIRM, "--deployed-confirm", min=1,
        help="--deployed-checks with --speedup: pair each candidate with the teacher this many times; the "
             "median decides."),
    fill_missing: bool = typer.Option(False, "--fill-missing",
                                      help="--latency-table: predict ops the table lacks with the op "
                                           "latency model fitted on its rows (instead of failing)."),
) -> None:
    """Search the Pareto front of predicted metric vs latency and select the best architecture
    under the constraints."""
    from donna_nas.cli import console
    from donna_nas.cli.common import check_out_dir, parse_size
    from donna_nas.search.objectives import Constraints
    from donna_nas.search.report import print_summary
    from donna_nas.search.select import LatencyTarget, SelectionConfig
    from donna_nas.search.run import is_search_run, run_search

    if run is None:
        if not is_search_run(Path.cwd()):
            raise UserError("no RUN given, and the current directory is not a build-supernet run "
                            "(no space.yaml + predictor.json); pass the run directory: "
                            "donna-nas search RUN --latency-table T.csv | --measure ort")
        run = Path(".")
    check_out_dir(run, "RUN")
    if (latency_table is None) == (measure is None):
        raise UserError("give exactly one latency source: --latency-table CSV or --measure ort|ort-int8")
    cfg = SelectionConfig(**given(max_latency_ms=max_latency_ms, target_fps=target_fps,
                                  speedup=speedup, teacher_latency_ms=teacher_latency_ms,
                                  max_params=parse_count(max_params, "--max-params")))
    target = LatencyTarget.from_options(cfg.max_latency_ms, cfg.target_fps, cfg.speedup,
                                        cfg.teacher_latency_ms)
    if cfg.teacher_latency_ms is not None and cfg.speedup is None:
        raise UserError("--teacher-latency-ms is used with --speedup only")
    constraints = Constraints(max_params=cfg.max_params)
    deployed = None
    if deployed_checks:
        if target.origin == "none":
            raise UserError("--deployed-checks needs a latency bound: --speedup, --max-latency-ms or --target-fps")
        from donna_nas.search.run import deployed_latency_for_run

        deployed = deployed_latency_for_run(run, measure, space_file, parse_size(size) if size else None)
    refs = [parse_reference(r) for r in reference]
    bar = NsgaProgress(console)
    try:
        out = run_search(run, latency_table=latency_table, measure=measure, space=space_file,
                         predictor=predictor_file, constraints=constraints, method=method,
                         trials=trials, population=population, seed=seed, storage=storage,
                         objective=objective, input_size=parse_size(size) if size else None,
                         references=refs, study_name=study_name, measure_archs=measure_archs,
                         fill_missing=fill_missing, progress=bar, target=target,
                         teacher=teacher, log=lambda line: console.print(line, highlight=False),
                         deployed=deployed, deployed_checks=deployed_checks, deployed_guard=deployed_guard,
                         deployed_confirm=deployed_confirm)
    finally:
        bar.close()
    print_summary(console, out.result, out.paths, bound=out.bound, quality=out.quality,
                  selected_latency=out.selected_latency)
    out.require_selection()


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
