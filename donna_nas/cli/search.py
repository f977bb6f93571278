"""`donna-nas search RUN`: Pareto search of predicted metric vs latency; a thin layer over
``donna_nas.search.search``."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

import typer

from donna_nas.errors import UserError

MEASURE_KINDS = {"ort": "fp32", "ort-int8": "int8"}


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
        return Reference(m.group(1), float(m.group(2)), float(m.group(3)) if m.group(3) else None)
    except ValueError:
        raise UserError(f"--reference: expected NAME=LATENCY_MS or NAME=LATENCY_MS:METRIC, "
                        f"got {text!r}") from None


def resolve_table(text: str) -> Path:
    """A CSV path, or the name of a shipped table (``note10_ofa_mbv3_w12``)."""
    p = Path(text)
    if p.exists():
        return p
    from donna_nas.latency import shipped_tables_dir

    shipped = shipped_tables_dir() / (text if text.endswith(".csv") else f"{text}.csv")
    if shipped.exists():
        return shipped
    names = sorted(f.stem for f in shipped_tables_dir().glob("*.csv"))
    raise UserError(f"--latency-table {text}: no such file, and not a shipped table "
                    f"(shipped: {', '.join(names)})")


def load_inputs(run: Path, predictor_file: str | None, space_file: str | None):
    """The space and predictor of a run (or of the explicit files)."""
    from donna_nas.search.objectives import LinearBlockPredictor
    from donna_nas.space import load_space

    if space_file:
        space = load_space(space_file)
    else:
        path = run / "space.yaml"
        if not path.exists():
            raise UserError(f"{path}: not found; create the run with `donna-nas build-supernet "
                            f"{run}` or pass --space FILE")
        space = load_space(path)
    if predictor_file:
        pred_path = Path(predictor_file)
    else:
        pred_path = run / "predictor.json"
        if not pred_path.exists():
            raise UserError(f"{pred_path}: not found; it is written by `donna-nas build-supernet "
                            f"{run}` (or pass --predictor FILE)")
    predictor = LinearBlockPredictor.from_json(pred_path)
    return space, predictor, pred_path


def _digest(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def search_cmd(
    run: Path = typer.Argument(..., help="Run directory (reads space.yaml and predictor.json, "
                                         "writes tables/, plots/, studies/, selected.json)."),
    latency_table: Optional[str] = typer.Option(None, "--latency-table",
                                                help="Latency lookup table CSV (or shipped table name)."),
    measure: Optional[str] = typer.Option(None, "--measure",
                                          help="Measure latency with ONNX Runtime here: ort | ort-int8."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="Latency bound."),
    max_params: Optional[str] = typer.Option(None, "--max-params", help="Params bound, e.g. 3.5M."),
    method: str = typer.Option("auto", "--method", help="auto | exact | nsga2."),
    trials: int = typer.Option(2000, "--trials", help="NSGA-II: total trials of the study."),
    population: int = typer.Option(50, "--population", help="NSGA-II population size."),
    storage: Optional[str] = typer.Option(None, "--storage",
                                          help="optuna RDB URL (e.g. sqlite:///study.db, postgresql://...) "
                                               "shared by several workers (default: a fast "
                                               "trial log RUN/studies/STUDY.jsonl)."),
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
    fill_missing: bool = typer.Option(False, "--fill-missing",
                                      help="--latency-table: predict ops the table lacks with the op "
                                           "latency model fitted on its rows (instead of failing)."),
) -> None:
    """Search the Pareto front of predicted metric vs latency and select the best architecture
    under the constraints."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from donna_nas.cli import console
    from donna_nas.cli.common import parse_size
    from donna_nas.search.api import search
    from donna_nas.search.objectives import Constraints, check_coverage
    from donna_nas.search.report import print_summary, write_outputs

    if (latency_table is None) == (measure is None):
        raise UserError("give exactly one latency source: --latency-table CSV or --measure ort|ort-int8")
    run = Path(run)
    space, predictor, pred_path = load_inputs(run, predictor_file, space_file)
    input_size = parse_size(size) if size else tuple(space.input_size)
    if latency_table is not None:
        from donna_nas.latency import LookupTable

        table_path = resolve_table(latency_table)
        latency = LookupTable.from_csv(table_path)
        latency_desc = f"table {table_path}"
        if fill_missing:
            from donna_nas.latency.model import ModelledLatency

            latency = ModelledLatency(latency)
            latency_desc += " (missing ops from the op latency model fitted on its rows)"
        else:
            check_coverage(space, latency, input_size)
    else:
        if measure not in MEASURE_KINDS:
            raise UserError(f"--measure {measure!r}: allowed: {', '.join(MEASURE_KINDS)}")
        from donna_nas.latency.model import measure_and_model

        precision = MEASURE_KINDS[measure]
        latency = measure_and_model(space, input_size, precision, run / "tables",
                                    archs=measure_archs, seed=seed, progress=True)
        latency_desc = (f"ONNX Runtime {precision} on this CPU: {len(latency.table)} ops measured "
                        f"({latency.table.path}), the rest from the op latency model")
    constraints = Constraints(max_latency_ms, parse_count(max_params, "--max-params"))
    if study_name is None:
        study_name = "search-" + _digest(space.fingerprint(), pred_path.read_bytes().decode(errors="replace"),
                                         latency_desc, input_size, constraints.to_json(), objective,
                                         population, seed)
    storage_mode = "direct" if storage else "log"
    if storage is None:
        storage = str(run / "studies" / f"{study_name}.jsonl")

    with Progress(TextColumn("[bold]NSGA-II"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("search", total=None)

        def progress(done: int, total: int) -> None:
            if done == 1 or done % 50 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        result = search(space, predictor, latency, constraints, method, trials=trials,
                        population=population, seed=seed, storage=storage,
                        storage_mode=storage_mode, study_name=study_name,
                        extra_objective=objective, input_size=input_size, progress=progress)
    paths = write_outputs(run, result, space, latency_desc, [parse_reference(r) for r in reference])
    print_summary(console, result, paths)
    if result.selected is None:
        raise UserError("no architecture meets the constraints; relax --max-latency-ms / --max-params")


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
