"""A search run: everything ``donna-nas search RUN`` does, as one library call.

``run_search(run, latency_table=... | measure=..., ...)`` reads the space and predictor of a
build-supernet run (or the given ones), chooses the latency source (a lookup table, a shipped
table name, optionally filled in by the op latency model, or ONNX Runtime measurements of this
CPU), names the study after everything that shapes its trials, keeps it in the run directory
(an optuna journal, ``RUN/studies/STUDY.log``) or an RDB URL, searches, and writes the tables,
the plot and ``selected.json`` (removing a stale one when nothing meets the constraints).

The CLI and both quickstarts call it; progress and log lines are passed in as callables, so
this module needs no terminal (it never imports ``donna_nas.cli``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from donna_nas.errors import UserError

__all__ = ["MEASURE_KINDS", "SearchRun", "default_storage", "latency_source", "load_inputs",
           "resolve_table", "run_search", "study_name_for", "is_search_run"]

MEASURE_KINDS = {"ort": "fp32", "ort-int8": "int8"}


@dataclass
class SearchRun:
    """What a search run produced: the search result, the files written and how it was set up."""

    result: Any                     # donna_nas.search.api.SearchResult
    paths: dict[str, Path]
    space: Any
    latency_desc: str
    study_name: str
    storage: str
    notes: list[str] = field(default_factory=list)

    @property
    def selected(self):
        return self.result.selected


def is_search_run(path: str | Path) -> bool:
    """``path`` holds what a search needs: ``space.yaml`` and ``predictor.json`` (build-supernet)."""
    p = Path(path)
    return (p / "space.yaml").is_file() and (p / "predictor.json").is_file()


def resolve_table(text: str, flag: str = "--latency-table") -> Path:
    """A CSV path, or the name of a shipped table (``note10_ofa_mbv3_w12``)."""
    p = Path(text)
    if p.is_file():
        return p
    from donna_nas.latency import shipped_tables_dir

    shipped = shipped_tables_dir() / (text if text.endswith(".csv") else f"{text}.csv")
    if shipped.is_file():
        return shipped
    names = sorted(f.stem for f in shipped_tables_dir().glob("*.csv"))
    what = "is a folder" if p.is_dir() else "no such file"
    raise UserError(f"{flag} {text}: {what}, and not a shipped table "
                    f"(shipped: {', '.join(names)})")


def load_inputs(run: Path, predictor_file: str | Path | None = None, space: Any = None):
    """(space, predictor, predictor path) of a run, or of the explicit space/predictor."""
    from donna_nas.search.objectives import LinearBlockPredictor
    from donna_nas.space import load_space

    if space is None:
        path = run / "space.yaml"
        if not path.is_file():
            raise UserError(f"{path}: not found; create the run with `donna-nas build-supernet "
                            f"--space SPACE --teacher TEACHER --out {run}` or pass --space FILE")
        space = load_space(path)
    elif isinstance(space, (str, Path)):
        space = load_space(space)
    if predictor_file:
        pred_path = Path(predictor_file)
    else:
        pred_path = run / "predictor.json"
        if not pred_path.is_file():
            raise UserError(f"{pred_path}: not found; it is written by `donna-nas build-supernet "
                            f"--space SPACE --out {run}` (or pass --predictor FILE)")
    from donna_nas.predictor.check import check_predictor_space

    check_predictor_space(pred_path, space)  # fitted on this space, every block covered
    predictor = LinearBlockPredictor.from_json(pred_path)
    return space, predictor, pred_path


def latency_source(space, input_size: tuple[int, int], *, latency_table: str | None = None,
                   measure: str | None = None, fill_missing: bool = False,
                   tables_dir: str | Path = "tables", measure_archs: int = 30, seed: int = 0,
                   measure_progress: bool = True):
    """(latency source, one-line description) for a table (path or shipped name; missing ops an
    error, or predicted by the op latency model with ``fill_missing``) or ONNX Runtime
    measurements (``measure``: ``ort`` / ``ort-int8``) of a sample of op instances here."""
    from donna_nas.search.objectives import check_coverage

    if (latency_table is None) == (measure is None):
        raise UserError("give exactly one latency source: --latency-table CSV or --measure ort|ort-int8")
    if latency_table is not None:
        from donna_nas.latency import LookupTable

        table_path = resolve_table(latency_table)
        latency = LookupTable.from_csv(table_path)
        desc = f"table {table_path}"
        if fill_missing:
            from donna_nas.latency.model import ModelledLatency

            latency = ModelledLatency(latency)
            desc += " (missing ops from the op latency model fitted on its rows)"
        else:
            check_coverage(space, latency, input_size)
        return latency, desc
    if measure not in MEASURE_KINDS:
        raise UserError(f"--measure {measure!r}: allowed: {', '.join(MEASURE_KINDS)}")
    from donna_nas.latency.model import measure_and_model

    precision = MEASURE_KINDS[measure]
    latency = measure_and_model(space, input_size, precision, tables_dir, archs=measure_archs,
                                seed=seed, progress=measure_progress)
    desc = (f"ONNX Runtime {precision} on this CPU: {len(latency.table)} ops measured "
            f"({latency.table.path}), the rest from the op latency model")
    return latency, desc


def study_name_for(space, pred_path: Path, latency_desc: str, input_size, constraints,
                   objective: str | None, population: int, seed: int) -> str:
    """A name that changes with everything that shapes the trials (so a new setting starts a
    new study instead of mixing stale constraint values into NSGA-II)."""
    parts = (space.fingerprint(), pred_path.read_bytes().decode(errors="replace"), latency_desc,
             tuple(input_size), constraints.to_json(), objective, population, seed)
    digest = hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return "search-" + digest


def default_storage(run: str | Path, study_name: str) -> str:
    """The run directory's study: an optuna journal file (``optuna.load_study`` opens it)."""
    return str(Path(run) / "studies" / f"{study_name}.log")


def run_search(run: str | Path, *, latency_table: str | None = None, measure: str | None = None,
               space: Any = None, predictor: str | Path | None = None, constraints=None,
               method: str = "auto", trials: int = 2000, population: int = 50, seed: int = 0,
               storage: str | None = None, objective: str | None = None,
               input_size: tuple[int, int] | None = None, references: Sequence[Any] = (),
               study_name: str | None = None, measure_archs: int = 30, fill_missing: bool = False,
               progress: Callable[[int, int], None] | None = None,
               log: Callable[[str], None] | None = None,
               measure_progress: bool = True) -> SearchRun:
    """Search the Pareto front of predicted metric vs latency for the run ``run`` and write its
    outputs there (``tables/``, ``plots/``, ``studies/``, ``selected.json``).

    ``space`` (a space, a YAML path or a shipped name) and ``predictor`` (a predictor JSON)
    replace the run's ``space.yaml`` / ``predictor.json``. ``storage``: an RDB URL shared by
    several workers, else the run's journal. ``progress(done, total)`` is called per NSGA-II
    trial; ``log(line)`` gets the setup lines. When no architecture meets the constraints the
    result's ``selected`` is ``None`` and ``RUN/selected.json`` does not exist afterwards.
    """
    from donna_nas.search.api import search
    from donna_nas.search.objectives import Constraints
    from donna_nas.search.report import write_outputs

    say = log or (lambda line: None)
    run = Path(run)
    space, pred, pred_path = load_inputs(run, predictor, space)
    size = tuple(input_size) if input_size else tuple(space.input_size)
    latency, desc = latency_source(space, size, latency_table=latency_table, measure=measure,
                                   fill_missing=fill_missing, tables_dir=run / "tables",
                                   measure_archs=measure_archs, seed=seed,
                                   measure_progress=measure_progress)
    say(f"latency: {desc}")
    constraints = constraints or Constraints()
    if study_name is None:
        study_name = study_name_for(space, pred_path, desc, size, constraints, objective,
                                    population, seed)
    if storage is None:
        storage = default_storage(run, study_name)
        mode = "journal"
    else:
        mode = "direct" if "://" in storage else "journal"
    result = search(space, pred, latency, constraints, method, trials=trials,
                    population=population, seed=seed, storage=storage, storage_mode=mode,
                    study_name=study_name, extra_objective=objective, input_size=size,
                    progress=progress)
    paths = write_outputs(run, result, space, desc, list(references))
    return SearchRun(result, paths, space, desc, study_name, storage)
