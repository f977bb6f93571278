"""NSGA-II search through optuna, over categorical per-block options derived from the space.

Each block option with more than one value becomes ``suggest``-style categorical parameter
``<block>.<option>`` (so any custom space works unchanged); single-valued options are fixed.
Constraints go to optuna's constrained NSGA-II through ``Trial.set_constraint``.

Storage. optuna's RDB storages (SQLite, PostgreSQL, ...) write each trial in many ORM
statements, one trial at a time: on this shared 2-core machine a few to a few tens of trials/s
into SQLite, against hundreds to a thousand per second in memory
(``experiments/bench_search.py`` measures both; in quick checks neither SQLite's WAL mode nor
optuna's journal-file storage nor bulk ``add_trials`` changed the order of magnitude). A 10k-trial
search would spend minutes in the database, so there are three modes:

* ``log`` (the default for a run directory, ``RUN/studies/<study>.jsonl``): the search runs on an
  in-memory study and appends its finished trials (parameters, objective values, user and system
  attributes, i.e. the NSGA-II generation and the constraint values) to a JSON-lines log once per
  generation and at the end. A stopped search loses at most the current generation; the next run
  replays the log into the in-memory study and continues. A torn last line is ignored.
* ``direct`` (an RDB URL such as ``sqlite:///study.db`` or ``postgresql://...``): every trial goes
  straight to the storage, so several machines can search one study, at RDB speed.
* ``memory``: nothing persists (the Python API's default).

``trials`` is the study's total target: rerunning with the same number does nothing new, a larger
number continues where the study stopped.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from donna_nas.errors import UserError
from donna_nas.search.objectives import Constraints, Evaluation, Evaluator
from donna_nas.space.space import Architecture, BlockChoice, SearchSpace

STORAGE_MODES = ("auto", "log", "direct", "memory")


@dataclass
class TrialRecord:
    number: int
    evaluation: Evaluation
    feasible: bool


@dataclass
class NsgaResult:
    trials: list[TrialRecord]      # every completed trial of the study (earlier runs included)
    new_trials: int                # trials evaluated by this call
    seconds: float                 # wall time of this call's optimisation loop
    study_name: str
    storage: str | None

    @property
    def evals_per_s(self) -> float:
        return self.new_trials / self.seconds if self.seconds > 0 else float("nan")


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """One categorical distribution per block option that has more than one value."""
    out = {}
    for b in space.blocks:
        for opt, values in b.options().items():
            if len(values) > 1:
                out[f"{b.name}.{opt}"] = CategoricalDistribution(list(values))
    return out


def arch_from_params(space: SearchSpace, params: dict[str, Any]) -> Architecture:
    choices = []
    for b in space.blocks:
        kw = {opt: params.get(f"{b.name}.{opt}", values[0]) for opt, values in b.options().items()}
        choices.append(BlockChoice(**kw))
    return Architecture(space.block_names, tuple(choices))


class IncrementalNSGAIISampler(optuna.samplers.NSGAIISampler):
    """optuna's NSGA-II (same selection, crossover, mutation and constraint handling), with its
    generation bookkeeping kept incrementally in the sampler.

    The stock sampler rescans every trial of the study on each ``ask`` (to find the current
    generation, the parent population and the search space), so a search slows down
    quadratically with its length (``experiments/bench_search.py`` compares both).
    Here the run loop hands each finished trial to ``observe`` and the generation counts,
    populations and parents are kept in dictionaries. With one process driving the study (the
    ``memory`` and ``log`` modes) the trial sequence is identical to the stock sampler's (a test
    checks it); shared RDB studies (``direct``) use the stock sampler, which sees other workers'
    trials.
    """

    def __init__(self, search_space: dict[str, CategoricalDistribution], **kwargs: Any):
        super().__init__(**kwargs)
        # sorted by name, as optuna's IntersectionSearchSpace returns it (same RNG draw order)
        self._fixed_space = {k: d for k, d in sorted(search_space.items()) if not d.single()}
        self._by_generation: dict[int, list[FrozenTrial]] = {}
        self._max_generation = 0
        self._parents: dict[int, list[FrozenTrial]] = {}

    def observe(self, trial: FrozenTrial) -> None:
        """Record a completed trial (in trial-number order)."""
        g = trial.system_attrs.get(self._get_generation_key())
        if g is None or trial.state != TrialState.COMPLETE:
            return
        self._by_generation.setdefault(g, []).append(trial)
        self._max_generation = max(self._max_generation, g)

    def infer_relative_search_space(self, study, trial):
        return dict(self._fixed_space)

    def get_trial_generation(self, study, trial):
        key = self._get_generation_key()
        g = trial.system_attrs.get(key)
        if g is not None:
            return g
        count = len(self._by_generation.get(self._max_generation, ()))
        g = self._max_generation if count < self.population_size else self._max_generation + 1
        study._storage.set_trial_system_attr(trial._trial_id, key, g)
        return g

    def get_population(self, study, generation):
        return list(self._by_generation.get(generation, ()))

    def get_parent_population(self, study, generation):
        if generation == 0:
            return []
        cached = self._parents.get(generation)
        if cached is not None:
            return list(cached)
        # after a resume nothing is cached: fill generations bottom-up (no deep recursion)
        lowest = generation
        while lowest > 1 and (lowest - 1) not in self._parents:
            lowest -= 1
        for g in range(lowest, generation):
            self.get_parent_population(study, g)
        parents = self.select_parent(study, generation)
        # optuna returns the selection order the first time and trial-number order from its
        # cache afterwards; doing the same keeps the random draws identical
        self._parents[generation] = sorted(parents, key=lambda t: t.number)
        return parents


# share the stock sampler's attribute names, so logs and RDB studies read the same either way
IncrementalNSGAIISampler._GENERATION_KEY = optuna.samplers.NSGAIISampler._get_generation_key()
IncrementalNSGAIISampler._PARENT_CACHE_KEY_PREFIX = \
    optuna.samplers.NSGAIISampler._get_parent_cache_key_prefix()


def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_study(storage: str | None, study_name: str, directions: list[str],
               sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                    sampler=sampler, load_if_exists=True)
    except ValueError as exc:
        raise UserError(f"study {study_name!r} in {storage}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - bad URLs surface as many driver errors
        if storage is None:
            raise
        raise UserError(f"--storage {storage}: cannot open ({type(exc).__name__}: {exc})") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study {study_name!r} in {storage} optimises "
                        f"{[d.name.lower() for d in study.directions]}, this search {directions}; "
                        f"use another --study-name or run directory")
    return study


class TrialLog:
    """Append-only JSON-lines log of a study's finished trials (see the module docstring).

    Line 1 identifies the study (name, directions, space fingerprint); a log written for another
    study or space is refused rather than mixed in.
    """

    def __init__(self, path: Path, study_name: str, directions: list[str], fingerprint: str):
        self.path = path
        self.header = {"study": study_name, "directions": directions, "space": fingerprint,
                       "format": "donna-nas-trials/1"}

    def load(self, dists: dict[str, CategoricalDistribution]) -> list[FrozenTrial]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        if not lines:
            return []
        try:
            head = json.loads(lines[0])
        except json.JSONDecodeError:
            raise UserError(f"{self.path}: first line is not a study header; delete the file "
                            f"to start the study afresh") from None
        if head != self.header:
            raise UserError(f"{self.path}: log of study {head.get('study')!r} (space "
                            f"{head.get('space')}, {head.get('directions')}), not of this search "
                            f"{self.header}; use another --study-name or delete the file")
        out = []
        for k, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if k == len(lines):
                    break  # torn last line of a stopped run
                raise UserError(f"{self.path}: line {k} is not valid JSON") from None
            unknown = set(rec["params"]) - set(dists)
            if unknown:
                raise UserError(f"{self.path}: line {k} has parameters {sorted(unknown)} the "
                                f"space does not define")
            out.append(optuna.trial.create_trial(
                params=rec["params"], distributions={k2: dists[k2] for k2 in rec["params"]},
                values=rec["values"], user_attrs=rec["user_attrs"],
                system_attrs=rec["system_attrs"]))
        return out

    def append(self, trials: list[FrozenTrial]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(self.header)] if new else []
        for t in trials:
            lines.append(json.dumps({"params": t.params, "values": t.values,
                                     "user_attrs": t.user_attrs,
                                     "system_attrs": t.system_attrs}))
        with open(self.path, "a") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())


def run_nsga2(space: SearchSpace, evaluator: Evaluator, constraints: Constraints | None = None, *,
              trials: int = 2000, population: int = 50, seed: int = 0,
              storage: str | None = None, storage_mode: str = "auto",
              study_name: str = "donna-nas-search", extra_objective: str | None = None,
              progress: Callable[[int, int], None] | None = None,
              fast_sampler: bool = True) -> NsgaResult:
    """Run NSGA-II until the study holds ``trials`` completed trials; return them all."""
    _quiet_optuna()
    constraints = constraints or Constraints()
    if storage is None:
        storage_mode = "memory"
    elif storage_mode == "auto":  # a URL is an RDB study, anything else a trial-log path
        storage_mode = "direct" if "://" in str(storage) else "log"
    if storage_mode not in STORAGE_MODES:
        raise UserError(f"storage mode {storage_mode!r} unknown; allowed: {', '.join(STORAGE_MODES)}")
    if population < 2:
        raise UserError(f"--population must be at least 2, got {population}")
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    directions = [evaluator.predictor.direction, "minimize"] + (["minimize"] if extra_objective else [])

    dists = distributions(space)

    def make_sampler() -> optuna.samplers.NSGAIISampler:
        if storage_mode == "direct" or not fast_sampler:
            return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
        return IncrementalNSGAIISampler(dists, population_size=population, seed=seed)

    log = None
    if storage_mode == "log":
        log = TrialLog(Path(storage), study_name, directions, space.fingerprint())
        study = open_study(None, study_name, directions, make_sampler())
        stored = log.load(distributions(space))
        if stored:
            study.add_trials(stored)
    else:
        study = open_study(storage if storage_mode == "direct" else None, study_name, directions,
                           make_sampler())
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sampler = study.sampler
    observe = getattr(sampler, "observe", None)
    if observe is not None:
        for ft in completed:
            observe(ft)
    todo = max(0, trials - len(completed))
    pending: list[FrozenTrial] = []

    def flush() -> None:
        if log is not None and pending:
            log.append(pending)
            pending.clear()

    t0 = time.perf_counter()
    for k in range(todo):
        trial = study.ask(dists)
        arch = arch_from_params(space, trial.params)
        ev = evaluator.evaluate(arch)
        viol = constraints.violations(ev.latency_ms, ev.params)
        trial.set_user_attr("arch", ev.arch)
        trial.set_user_attr("params", ev.params)
        trial.set_user_attr("macs", ev.macs)
        # optuna >= 5 reads constraints from the trial (<= 0 is feasible); constrained NSGA-II
        # then ranks feasible trials first and infeasible ones by total violation
        if constraints.max_latency_ms is not None:
            trial.set_constraint("max_latency_ms", viol[0])
        if constraints.max_params is not None:
            trial.set_constraint("max_params", viol[-1])
        values = [ev.metric, ev.latency_ms]
        if extra_objective:
            values.append(float(ev.params if extra_objective == "params" else ev.macs))
        frozen = study.tell(trial, values)
        if observe is not None:
            observe(frozen)
        if log is not None:
            pending.append(frozen)
            if len(pending) >= population:
                flush()
        if progress is not None:
            progress(k + 1, todo)
    flush()
    seconds = time.perf_counter() - t0

    records = []
    for ft in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        ua = ft.user_attrs
        arch_text = ua.get("arch") or arch_from_params(space, ft.params).encode()
        ev = Evaluation(arch_text, float(ft.values[0]), float(ft.values[1]),
                        int(ua.get("params", 0)), int(ua.get("macs", 0)))
        records.append(TrialRecord(ft.number, ev, constraints.ok(ev.latency_ms, ev.params)))
    return NsgaResult(records, todo, seconds, study_name, storage)
