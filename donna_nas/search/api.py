"""``search(space, predictor, latency, constraints, method)``: the Python entry point.

Picks the engine (``exact`` when predictor and latency are additive over blocks, else NSGA-II),
runs it, filters the front by the constraints and selects the best architecture under them.
When the exact front is computable it is also used to score an NSGA-II run: the hypervolume of
the evolutionary front divided by the exact front's, both in (metric, latency) with the
reference point at the exact front's nadir × 1.1 (``pareto.reference_point``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from donna_nas.errors import UserError
from donna_nas.search.exact import EXTRA_OBJECTIVES, exact_front, exact_supported
from donna_nas.search.nsga import STORAGE_MODES, run_nsga2
from donna_nas.search.objectives import (
    Constraints,
    Evaluation,
    Evaluator,
    Predictor,
    as_latency_source,
    check_predictor,
)
from donna_nas.search.pareto import hypervolume_2d, pareto_front, reference_point
from donna_nas.space.space import SearchSpace

METHODS = ("auto", "exact", "nsga2")


@dataclass
class SearchResult:
    method: str                                   # engine that produced ``front``
    front: list[Evaluation]                       # feasible, non-dominated, by latency
    evaluated: list[Evaluation]                   # every evaluated point (NSGA-II trials, or a
                                                  # random sample for context with ``exact``)
    feasible: list[bool]                          # per ``evaluated``
    source: str                                   # "trial" or "sample"
    selected: Evaluation | None                   # best metric under the constraints
    constraints: Constraints
    direction: str
    metric_name: str
    exact: list[Evaluation] | None = None         # exact front when computable
    exact_seconds: float | None = None
    hv_ratio: float | None = None                 # NSGA-II front HV / exact front HV
    hv_reference: tuple[float, float] | None = None
    seconds: float = 0.0                          # engine wall time (this call)
    evaluations_this_call: int = 0
    study_name: str | None = None
    storage: str | None = None
    extra_objective: str | None = None
    notes: list[str] = field(default_factory=list)
    fastest: Evaluation | None = None             # when nothing is selected: the fastest
                                                  # architecture within the other constraints

    @property
    def evals_per_s(self) -> float:
        return self.evaluations_this_call / self.seconds if self.seconds > 0 else float("nan")


def _sign(direction: str) -> float:
    return -1.0 if direction == "maximize" else 1.0


def front_of(evals: list[Evaluation], direction: str, extra_objective: str | None = None
             ) -> list[Evaluation]:
    """Non-dominated members of ``evals`` (one per objective vector), sorted by latency."""
    if not evals:
        return []
    s = _sign(direction)
    cols = [[s * e.metric, e.latency_ms] + ([float(getattr(e, extra_objective))]
                                              if extra_objective else []) for e in evals]
    idx = pareto_front(np.asarray(cols), unique=True)
    return sorted((evals[i] for i in idx), key=lambda e: (e.latency_ms, s * e.metric))


def select_best(front: list[Evaluation], direction: str,
                constraints: Constraints | None = None) -> Evaluation | None:
    """Best predicted metric among the front members that meet ``constraints`` (the selection
    rule, ``donna_nas.search.select.select_under_bound``); ties go to lower latency."""
    from donna_nas.search.select import select_under_bound

    c = constraints or Constraints()
    return select_under_bound(front, direction, c.max_latency_ms, c.max_params)


def _fastest(space: SearchSpace, evaluator: Evaluator, constraints: Constraints,
             evaluated: list[Evaluation], exact_ok: bool) -> Evaluation | None:
    """The fastest architecture within the params bound (what the no-selection error names):
    exactly from the unconstrained-latency exact front when computable, else among ``evaluated``."""
    from donna_nas.search.select import fastest

    if exact_ok:
        front = exact_front(space, evaluator, Constraints(max_params=constraints.max_params)).front
        if front:
            return fastest(front)
    return fastest(evaluated, constraints.max_params)


def hv_ratio(front: list[Evaluation], exact: list[Evaluation], direction: str
             ) -> tuple[float, tuple[float, float]]:
    """HV(front) / HV(exact) in (metric, latency), reference = exact nadir × 1.1."""
    s = _sign(direction)
    E = np.asarray([[s * e.metric, e.latency_ms] for e in exact])
    ref = reference_point(E)
    hv_exact = hypervolume_2d(E, ref)
    F = np.asarray([[s * e.metric, e.latency_ms] for e in front]).reshape(-1, 2)
    ratio = hypervolume_2d(F, ref) / hv_exact if hv_exact > 0 else float("nan")
    return float(ratio), (float(ref[0]), float(ref[1]))


def search(space: SearchSpace, predictor: Predictor, latency: Any,
           constraints: Constraints | None = None, method: str = "auto", *,
           trials: int = 2000, population: int = 50, seed: int = 0,
           storage: str | None = None, storage_mode: str = "auto",
           study_name: str = "donna-nas-search", extra_objective: str | None = None,
           input_size: tuple[int, int] | None = None, score_with_exact: bool = True,
           context_samples: int = 2000,
           progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Search ``space`` for the (predicted metric, latency) Pareto front under ``constraints``.

    ``latency`` is a latency source (lookup table, ORT measurer, or a mapping op key → ms).
    ``method``: ``exact`` (additive objectives only), ``nsga2``, or ``auto`` (exact when valid).
    ``trials`` counts the study's total NSGA-II trials (a resumed study continues to it).
    ``extra_objective``: ``params`` or ``macs`` as a third objective.
    ``storage``: ``None`` (in memory), an optuna journal file path (written once per generation;
    ``optuna.load_study`` opens it) or an optuna RDB URL (a URL selects ``storage_mode="direct"``
    under the default ``"auto"``); see ``donna_nas.search.nsga``.
    """
    constraints = constraints or Constraints()
    if method not in METHODS:
        raise UserError(f"--method {method!r} unknown; allowed: {', '.join(METHODS)}")
    if extra_objective not in (None, *EXTRA_OBJECTIVES):
        raise UserError(f"--objective {extra_objective!r} unknown; allowed: {', '.join(EXTRA_OBJECTIVES)}")
    if storage_mode not in STORAGE_MODES:
        raise UserError(f"storage mode {storage_mode!r} unknown; allowed: {', '.join(STORAGE_MODES)}")
    predictor = check_predictor(predictor)
    direction, metric_name = predictor.direction, predictor.metric
    predictor.check_space(space)
    latency = as_latency_source(latency)
    evaluator = Evaluator(space, predictor, latency, input_size)
    why_not_exact = exact_supported(predictor, latency)
    if method == "exact" and why_not_exact:
        raise UserError(f"--method exact needs additive objectives, but {why_not_exact}; "
                        f"use --method nsga2 or auto")
    use = "exact" if method == "exact" or (method == "auto" and not why_not_exact) else "nsga2"

    exact = None
    exact_seconds = None
    if why_not_exact is None and (use == "exact" or score_with_exact):
        ex = exact_front(space, evaluator, constraints, extra_objective)
        exact, exact_seconds = ex.front, ex.seconds

    notes = []
    if use == "exact":
        rng = random.Random(seed)
        evaluated = [evaluator.evaluate(space.sample(rng)) for _ in range(context_samples)]
        feasible = [constraints.ok(e.latency_ms, e.params) for e in evaluated]
        result = SearchResult("exact", list(exact), evaluated, feasible, "sample",
                              select_best(exact, direction, constraints), constraints, direction,
                              metric_name,
                              exact=exact, exact_seconds=exact_seconds, seconds=exact_seconds,
                              evaluations_this_call=0, extra_objective=extra_objective)
        if method == "auto":
            result.notes.append("method auto: predictor and latency are additive over blocks, "
                                "so the exact solver was used")
        if result.selected is None:
            result.fastest = _fastest(space, evaluator, constraints, evaluated, True)
        return result

    if why_not_exact and method == "auto":
        notes.append(f"method auto: NSGA-II, because {why_not_exact}")
    res = run_nsga2(space, evaluator, constraints, trials=trials, population=population,
                    seed=seed, storage=storage, storage_mode=storage_mode, study_name=study_name,
                    extra_objective=extra_objective, metric_name=metric_name, progress=progress)
    notes.extend(res.notes)
    evaluated = [t.evaluation for t in res.trials]
    feasible = [t.feasible for t in res.trials]
    front = front_of([e for e, ok in zip(evaluated, feasible) if ok], direction, extra_objective)
    result = SearchResult("nsga2", front, evaluated, feasible, "trial",
                          select_best(front, direction, constraints), constraints, direction,
                          metric_name, exact=exact, exact_seconds=exact_seconds, seconds=res.seconds,
                          evaluations_this_call=res.new_trials, study_name=res.study_name,
                          storage=res.storage, extra_objective=extra_objective, notes=notes)
    if exact:
        result.hv_ratio, result.hv_reference = hv_ratio(front, exact, direction)
    elif exact is not None:
        result.notes.append("no architecture meets the constraints (exact solver)")
    if result.selected is None:
        result.fastest = _fastest(space, evaluator, constraints, evaluated, why_not_exact is None)
    return result
