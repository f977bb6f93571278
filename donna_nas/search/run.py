"""A search run: everything ``donna-nas search RUN`` does, as one library call.

``run_search(run, latency_table=... | measure=..., ...)`` reads the space and predictor of a
build-supernet run (or the given ones), chooses the latency source (a lookup table, a shipped
table name, optionally filled in by the op latency model, or ONNX Runtime measurements of this
CPU), names the study after everything that shapes its trials, keeps it in the run directory
(an optuna journal, ``RUN/studies/STUDY.log``) or an RDB URL, searches, and writes the tables,
the plot and ``selected.json`` (removing a stale one when nothing meets the constraints).

Hardware-aware selection (``donna_nas.search.select``): a ``LatencyTarget`` (``--max-latency-ms``,
``--target-fps`` or ``--speedup`` X) becomes the latency bound; for ``--speedup`` the teacher's
latency is taken on the same source as the candidates: with ``--measure ort|ort-int8`` its
*encoder* is timed unit by unit with ONNX Runtime at the search's input size and precision, the
way candidates' ops are (``donna_nas.latency.teacher``; kept in ``RUN/tables/teacher_latency_P.json``);
a table prices it only through a row ``model:NAME:h=H,w=W`` (``teacher_key``). The bound, its
origin, the teacher's latency, the predictor's Kendall τ and where the selected architecture's
latency came from (measured / modelled / looked up) are recorded in ``selected.json``.

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
from donna_nas.runtime.config_file import read_text

__all__ = ["DEPLOYED_CONFIRM", "DEPLOYED_GUARD", "MEASURE_KINDS", "SearchRun", "default_storage", "deployed_latency_for_run", "latency_label", "latency_source",
           "load_inputs", "resolve_table", "run_search", "study_name_for", "is_search_run",
           "teacher_key", "teacher_latency", "teacher_of_run"]

MEASURE_KINDS = {"ort": "fp32", "ort-int8": "int8"}

DEPLOYED_GUARD = 0.10
"""Guard band of the deployed check: a candidate's deployed latency must beat the bound by 10%.
The selected model sits at the bound by construction. In five default quickstarts on three
2-core CPUs the trained exports, timed side by side after the finetune, read 0.92-1.07 times the
speed-up the check had measured at selection (``experiments/quickstart_run.py --compare``,
``quickstart_repro_machines.md``), so a 1.5x bound needs the check to read about 1.64x: 5%, the
earlier band, left two of the five below 1.5x in their tables."""
DEPLOYED_CONFIRM = 3
"""Pairings of each deployed-check candidate with the teacher under a speedup bound; their median
decides. On a 2-core AMD EPYC VM one network's repeated pairings have a ratio sd of about 0.044
(±3%; e.g. 1.49x to 1.66x the teacher over four, ``experiments/bench_deployed_noise.py``), so a
single pairing near the bound passes or fails by chance. It does not remove a bias shared by a
whole run's pairings: one run's pairings read 0.2-0.27 above their later re-timing."""


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
    bound: Any = None               # donna_nas.search.select.LatencyBound
    quality: Any = None             # donna_nas.predictor.quality.PredictorQuality
    latency_axis: str = "latency (ms)"
    selected_latency: str = ""      # how the selected architecture's latency was obtained
    deployed: Any = None            # donna_nas.search.select.DeployedCheck, when one ran

    @property
    def selected(self):
        return self.result.selected

    def no_selection_message(self) -> str:
        from donna_nas.search.select import no_selection_message

        if self.deployed is not None and self.result.front:
            return self.deployed.no_selection_message()
        return no_selection_message(self.result.constraints, self.bound, self.result.fastest)

    def require_selection(self) -> None:
        """Raise the one-line ``UserError`` (bound, fastest candidate) when nothing was selected."""
        if self.selected is None:
            raise UserError(self.no_selection_message())


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


def teacher_key(name: str, input_size: tuple[int, int]) -> str:
    """The table row key that prices a whole teacher encoder: ``model:resnet18:h=96,w=320``."""
    return f"model:{name}:h={input_size[0]},w={input_size[1]}"


def teacher_of_run(run: Path) -> str | None:
    """The teacher backbone a build-supernet run distilled from (``RUN/teacher.json``)."""
    path = Path(run) / "teacher.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(read_text(path, "restore it, or pass --teacher resnet18|resnet50"))
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc).splitlines()[0]}); restore it, or pass "
                        "--teacher resnet18|resnet50") from None
    name = (info.get("backbone") or info.get("name")) if isinstance(info, dict) else None
    if not name:
        raise UserError(f"{path}: no 'backbone' field naming the teacher; restore it, or pass --teacher resnet18|resnet50")
    return str(name)


def _teacher_backbone(teacher: str) -> str:
    """``resnet18`` / ``resnet50`` as given, or the backbone of a depth run directory."""
    p = Path(teacher)
    if (p / "model.json").is_file():
        try:
            return str(json.loads((p / "model.json").read_text())["backbone"])
        except (ValueError, KeyError):
            raise UserError(f"--teacher {teacher}: {p / 'model.json'} names no backbone") from None
    return teacher.strip().lower()


def teacher_latency(kind: str, latency, teacher: str | None, input_size: tuple[int, int],
                    tables_dir: str | Path, table_name: str = "", precision: str = "int8",
                    log: Callable[[str], None] | None = None):
    """The teacher's ``TeacherLatency`` on the search's latency source.

    ``kind`` ``measure``: the teacher's encoder timed with ONNX Runtime here
    (``donna_nas.latency.teacher``), cached in ``tables_dir/teacher_latency_PRECISION.json``;
    ``kind`` ``table``: the table's ``teacher_key`` row, else a one-line error asking for
    ``--teacher-latency-ms`` or ``--max-latency-ms``."""
    from donna_nas.search.select import TeacherLatency

    if not teacher:
        raise UserError("--speedup: the teacher is unknown (no RUN/teacher.json); pass --teacher "
                        "resnet18|resnet50, --teacher-latency-ms MS or --max-latency-ms MS")
    name = _teacher_backbone(teacher)
    size = (int(input_size[0]), int(input_size[1]))
    if kind == "table":
        key = teacher_key(name, size)
        recorded = latency.recorded_latencies([key])
        if key not in recorded:
            raise UserError(f"--speedup: the latency table {table_name} cannot price the teacher "
                            f"{name} at {size[0]}x{size[1]} (no row {teacher_key(name, size)!r}); "
                            f"pass --teacher-latency-ms MS (its latency on that device) or "
                            f"--max-latency-ms MS instead")
        return TeacherLatency(name, float(recorded[key]), f"looked up ({table_name})")
    from donna_nas.runtime.io import write_json_atomic

    cache = Path(tables_dir) / f"teacher_latency_{precision}.json"
    rec = None
    if cache.is_file():
        try:
            rec = json.loads(cache.read_text())
        except ValueError:
            rec = None
    from donna_nas.latency.ort import cpu_name

    if not (isinstance(rec, dict) and rec.get("teacher") == name and rec.get("input_size") == list(size)
            and rec.get("precision") == precision and rec.get("device") == cpu_name()):
        from donna_nas.latency.teacher import measure_resnet_encoder

        if log:
            log(f"measuring the teacher {name}'s encoder at {size[0]}x{size[1]} with ONNX Runtime {precision}")
        rec = measure_resnet_encoder(name, size, precision)
        write_json_atomic(cache, rec)
    return TeacherLatency(name, float(rec["latency_ms"]),
                          f"measured (ONNX Runtime {precision} on this CPU, encoder at "
                          f"{size[0]}x{size[1]}, summed per unit like the candidates; {cache.name})")


def latency_label(kind: str, latency, space, arch, input_size, table_name: str = "",
                  precision: str = "") -> str:
    """How ``arch``'s latency was obtained: ``measured`` (every op timed with ONNX Runtime here),
    ``modelled`` (some ops from the op latency model) or ``looked up (TABLE)``."""
    keys = set(op.key for op in space.ops(arch, tuple(input_size)))
    n, known = len(keys), len(latency.recorded_latencies(keys))
    if kind == "measure":
        if known == n:
            return f"measured (ONNX Runtime {precision} on this CPU, all {n} ops timed)"
        return (f"modelled ({known} of {n} ops measured with ONNX Runtime {precision} on this CPU, "
                f"the rest from the op latency model)")
    if known < n:  # a table filled in by the op latency model
        return f"looked up ({table_name}) for {known} of {n} ops, the rest modelled (op latency model)"
    return f"looked up ({table_name})"


def deployed_latency_for_run(run: str | Path, measure: str, space: Any = None,
                             input_size: tuple[int, int] | None = None):
    """The run's task's ``DeployedLatency`` (``Task.deployed_latency``) for ``--deployed-checks``:
    ORT at ``measure``'s precision, the run's space (or ``space``) at ``input_size`` (default the
    space's). One-line errors for a run without a task, or a task with no deployed network."""
    import yaml

    from donna_nas.tasks.base import get_task

    run = Path(run)
    if measure not in MEASURE_KINDS:
        raise UserError("--deployed-checks times whole networks with ONNX Runtime here: use it with "
                        "--measure ort|ort-int8, not with a latency table")
    try:
        task_name = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("task", "depth")
    except (OSError, yaml.YAMLError):
        raise UserError(f"{run / 'config.yaml'}: missing or unreadable; --deployed-checks needs the "
                        f"build-supernet run's task") from None
    sp, _, _ = load_inputs(run, None, space)
    size = tuple(input_size) if input_size else tuple(sp.input_size)
    deployed = get_task(str(task_name)).deployed_latency(run, sp, size, MEASURE_KINDS[measure])
    if deployed is None:
        raise UserError(f"--deployed-checks: task {task_name} has no deployed network to time "
                        f"(it selects on the encoder's latency); drop --deployed-checks")
    return deployed


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
               measure_progress: bool = True, target: Any = None,
               teacher: str | None = None, deployed: Any = None, deployed_checks: int = 16,
               deployed_guard: float = DEPLOYED_GUARD, deployed_confirm: int = DEPLOYED_CONFIRM) -> SearchRun:
    """Search the Pareto front of predicted metric vs latency for the run ``run`` and write its
    outputs there (``tables/``, ``plots/``, ``studies/``, ``selected.json``).

    ``space`` (a space, a YAML path or a shipped name) and ``predictor`` (a predictor JSON)
    replace the run's ``space.yaml`` / ``predictor.json``. ``storage``: an RDB URL shared by
    several workers, else the run's journal. ``progress(done, total)`` is called per NSGA-II
    trial; ``log(line)`` gets the setup lines. When no architecture meets the constraints the
    result's ``selected`` is ``None`` and ``RUN/selected.json`` does not exist afterwards
    (``SearchRun.require_selection`` raises the one-line error).

    ``target``: a ``donna_nas.search.select.LatencyTarget`` (the latency bound; it must not be
    combined with ``constraints.max_latency_ms``); ``teacher``: the teacher whose latency
    ``--speedup`` divides (``resnet18`` / ``resnet50`` / a depth run; default the run's
    ``teacher.json``). ``deployed``: a ``donna_nas.search.select.DeployedLatency``; with a latency
    bound, the selection is then the best predicted front member whose *deployed* model (timed end
    to end, at most ``deployed_checks`` candidates) meets the bound by the guard band
    ``deployed_guard``, each candidate judged by the median of ``deployed_confirm`` pairings with
    the teacher under a speedup bound (``check_deployed``).
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
    from donna_nas.predictor.quality import PredictorQuality
    from donna_nas.search.select import LatencyBound

    kind = "measure" if measure is not None else "table"
    table_name = resolve_table(latency_table).name if latency_table is not None else ""
    precision = MEASURE_KINDS.get(measure or "", "") or latency.precision
    constraints = constraints or Constraints()
    if target is not None and target.origin != "none":
        if constraints.max_latency_ms is not None:
            raise UserError("give the latency bound once: a latency target or constraints.max_latency_ms")
        teacher = teacher or teacher_of_run(run)
        teacher_lat = None
        if target.needs_teacher:
            teacher_lat = teacher_latency(kind, latency, teacher, size, run / "tables", table_name,
                                          precision or "int8", say)
        bound = target.resolve(teacher_lat, _teacher_backbone(teacher) if teacher else "teacher")
        constraints = Constraints(bound.max_latency_ms, constraints.max_params)
    elif constraints.max_latency_ms is not None:
        bound = LatencyBound(float(constraints.max_latency_ms), "max-latency-ms",
                             float(constraints.max_latency_ms))
    else:
        bound = LatencyBound(None, "none")
    say(f"selection: best predicted {pred.metric} with {bound.describe()}")
    quality = PredictorQuality.from_file(pred_path)
    # with a deployed check the whole front is its candidate list: op sums mis-price whole
    # networks, so the source bound is reported but does not cut the front
    search_cons = (Constraints(None, constraints.max_params) if deployed is not None and bound.max_latency_ms
                   else constraints)
    if study_name is None:
        study_name = study_name_for(space, pred_path, desc, size, search_cons, objective,
                                    population, seed)
    if storage is None:
        storage = default_storage(run, study_name)
        mode = "journal"
    else:
        mode = "direct" if "://" in storage else "journal"
    result = search(space, pred, latency, search_cons, method, trials=trials,
                    population=population, seed=seed, storage=storage, storage_mode=mode,
                    study_name=study_name, extra_objective=objective, input_size=size,
                    progress=progress)
    axis = ("latency (ms), ONNX Runtime " + precision + " on this CPU: measured ops + op latency model"
            if kind == "measure" else f"latency (ms), looked up ({table_name})"
            + (", ops it lacks modelled" if fill_missing else ""))
    check = None
    if deployed is not None and bound.max_latency_ms is not None:
        from donna_nas.search.select import check_deployed

        check = check_deployed(result.front, result.direction, bound, deployed, constraints.max_params,
                               deployed_checks, deployed_guard, deployed_confirm)
        result.selected = check.selected
        say(f"deployed check: {check.describe()}")
    sel_label = ""
    info: dict[str, Any] = {"latency_bound": bound.to_json(), "predictor_quality": quality.to_json(),
                            "params_scope": "encoder (stem + blocks); the decoder is not counted"}
    if result.selected is not None:
        sel_label = latency_label(kind, latency, space, space.decode(result.selected.arch), size,
                                  table_name, precision)
        info.update(latency_ms_how=sel_label,
                    teacher_latency_ms=bound.teacher.latency_ms if bound.teacher else None)
    if check is not None:
        info["deployed_check"] = check.to_json()
        if check.selected is not None:
            # the selected network's own timing: with --speedup each candidate is judged against
            # the teacher timed beside it (its pairing), not against the median of all pairings
            own = next(c for c in check.checked if c["arch"] == check.selected.arch)
            info.update(deployed_latency_ms=own["deployed_ms"], deployed_bound_ms=own["bound_ms"],
                        teacher_deployed_ms=own["teacher_ms"] if own["teacher_ms"] is not None else check.teacher_ms,
                        teacher_deployed_median_ms=check.teacher_ms)
    paths = write_outputs(run, result, space, desc, list(references), info=info,
                          latency_axis=axis, quality=quality)
    return SearchRun(result, paths, space, desc, study_name, storage, bound=bound, quality=quality,
                     latency_axis=axis, selected_latency=sel_label, deployed=check)
