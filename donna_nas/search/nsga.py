"""NSGA-II search through optuna, over categorical per-block options derived from the space.

Each block option with more than one value becomes ``suggest``-style categorical parameter
``<block>.<option>`` (so any custom space works unchanged); single-valued options are fixed.
Constraints go to optuna's constrained NSGA-II through ``Trial.set_constraint``.

Storage modes:

* ``journal`` (the default for a run directory, ``RUN/studies/<study>.log``): the search runs on
  an in-memory study and mirrors its finished trials into an optuna journal file once per
  generation and at the end (``donna_nas.search.storage``). ``optuna.load_study`` and
  ``optuna-dashboard`` open the file; a stopped search loses at most the current generation and
  the next run continues from the file. A torn last line is cut off before anything is appended.
* ``direct`` (an RDB URL such as ``sqlite:///study.db`` or ``postgresql://...``): every trial goes
  straight to the storage, so several workers can search one study, at RDB speed. A ``RUNNING``
  trial left by a killed worker (same host, process gone; or any host, older than
  ``stale_after_s``) is marked ``FAIL`` when a worker starts.
* ``memory``: nothing persists (the Python API's default).

``trials`` is the study's total target, however many workers share it: rerunning with the same
number does nothing new, a larger number continues where the study stopped.

Reproducibility. The sampler's random draws for a trial are reseeded from (``seed``, the trial's
index: the number of completed trials, plus other workers' running ones, when it starts), so the
trajectory is a function of the seed and the completed trials only. A search stopped anywhere and
resumed therefore gives the same trials, in the same order, as one that never stopped; and a
single-worker RDB study gives the same trials as the in-memory one.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from donna_nas.errors import UserError
from donna_nas.runtime.io import kill_point
from donna_nas.search.objectives import Constraints, Evaluation, Evaluator
from donna_nas.space.space import Architecture, BlockChoice, SearchSpace

STORAGE_MODES = ("auto", "journal", "direct", "memory")
WORKER_ATTR = "worker"                 # trial user attribute "host:pid" of the worker (direct)
STALE_AFTER_S = 3600.0                 # a RUNNING trial of another host this old is abandoned


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
    storage_mode: str = "memory"
    notes: list[str] = field(default_factory=list)

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


def _u32(x: int) -> int:
    return int(x) & 0xFFFFFFFF


class SeededNSGAIISampler(optuna.samplers.NSGAIISampler):
    """optuna's NSGA-II whose random draws for a trial depend only on (seed, trial index).

    The stock sampler draws from one random stream for the whole study, so a resumed study
    (a new sampler, the stream restarted) takes another path than an uninterrupted one. Here
    ``before_trial`` reseeds both of its streams (child generation and the random sampler used
    for the first generation and mutations) from ``(seed, index)``, where ``index`` counts the
    completed trials and the other workers' running ones when the trial starts. Parents are
    returned in trial-number order (the stock sampler returns the selection order the first time
    and trial-number order from its cache afterwards, which would make a resumed study depend
    on where it stopped).
    """

    def __init__(self, *, seed: int | None = None, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self._base_seed = seed
        # the two streams optuna's NSGA-II draws from; checked here so that an optuna that
        # renames them fails loudly instead of silently losing reproducibility
        if not (hasattr(self, "_rng") and hasattr(self._random_sampler, "_rng")):
            raise RuntimeError("optuna's NSGAIISampler internals changed: no _rng to reseed")

    def trial_index(self, study: optuna.Study, trial: FrozenTrial) -> int:
        live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
        return sum(1 for t in live if t.number != trial.number)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        super().before_trial(study, trial)
        if self._base_seed is not None:
            k = self.trial_index(study, trial)
            self._rng.rng.seed([_u32(self._base_seed), _u32(k), 1])
            self._random_sampler._rng.rng.seed([_u32(self._base_seed), _u32(k), 0])

    def get_parent_population(self, study, generation):
        return sorted(super().get_parent_population(study, generation), key=lambda t: t.number)


class IncrementalNSGAIISampler(SeededNSGAIISampler):
    """``SeededNSGAIISampler`` (same selection, crossover, mutation, constraint handling and
    draws) with its generation bookkeeping kept incrementally in the sampler.

    The stock sampler rescans every trial of the study on each ``ask`` (to find the current
    generation, the parent population and the search space), so a search slows down
    quadratically with its length (``experiments/bench_search.py`` compares both).
    Here the run loop hands each finished trial to ``observe`` and the generation counts,
    populations and parents are kept in dictionaries. With one process driving the study (the
    ``memory`` and ``journal`` modes) the trial sequence is identical to the stock
    bookkeeping's (a test checks it); shared RDB studies (``direct``) use
    ``SeededNSGAIISampler``, which sees other workers' trials.
    """

    def __init__(self, search_space: dict[str, CategoricalDistribution], **kwargs: Any):
        super().__init__(**kwargs)
        # sorted by name, as optuna's IntersectionSearchSpace returns it (same RNG draw order)
        self._fixed_space = {k: d for k, d in sorted(search_space.items()) if not d.single()}
        self._by_generation: dict[int, list[FrozenTrial]] = {}
        self._max_generation = 0
        self._parents: dict[int, list[FrozenTrial]] = {}
        self._n_complete = 0

    def observe(self, trial: FrozenTrial) -> None:
        """Record a completed trial (in trial-number order)."""
        if trial.state != TrialState.COMPLETE:
            return
        self._n_complete += 1
        g = trial.system_attrs.get(self._get_generation_key())
        if g is None:
            return
        self._by_generation.setdefault(g, []).append(trial)
        self._max_generation = max(self._max_generation, g)

    def trial_index(self, study, trial) -> int:
        return self._n_complete

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
        self._parents[generation] = sorted(self.select_parent(study, generation),
                                           key=lambda t: t.number)
        return list(self._parents[generation])


# share the stock sampler's attribute names, so journals and RDB studies read the same either way
for _cls in (SeededNSGAIISampler, IncrementalNSGAIISampler):
    _cls._GENERATION_KEY = optuna.samplers.NSGAIISampler._get_generation_key()
    _cls._PARENT_CACHE_KEY_PREFIX = optuna.samplers.NSGAIISampler._get_parent_cache_key_prefix()


def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_study(storage: Any, study_name: str, directions: list[str],
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


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier process with this pid: it is gone, since this one has it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def fail_stale_trials(study: optuna.Study, stale_after_s: float = STALE_AFTER_S) -> int:
    """Mark ``RUNNING`` trials whose worker is gone as ``FAIL``; return how many.

    A trial's worker is recorded as ``host:pid``: on this host it is gone when that process no
    longer exists; a trial of another host (or without a worker) is given up after
    ``stale_after_s`` seconds.
    """
    host = socket.gethostname()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = str(t.user_attrs.get(WORKER_ATTR, ""))
        h, _, pid = w.rpartition(":")
        if h == host and pid.isdigit():
            stale = not _pid_alive(int(pid))
        else:
            start = t.datetime_start
            age = (datetime.now(start.tzinfo) - start).total_seconds() if start else float("inf")
            stale = age > stale_after_s
        if stale:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            n += 1
    return n


def _live_before(study: optuna.Study, number: int | None = None) -> int:
    """Completed + running trials of the study (with ``number``: those numbered before it)."""
    live = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    if number is None:
        return len(live)
    return sum(1 for t in live if t.number < number)


def _constraint_values(constraints: Constraints, ev: Evaluation) -> dict[str, float]:
    """The set bounds' violations by name (``max_latency_ms``, ``max_params``; <= 0 is met)."""
    viol = constraints.violations(ev.latency_ms, ev.params)
    if isinstance(viol, dict):
        return viol
    out = {}  # an older Constraints: a list, latency first
    if constraints.max_latency_ms is not None:
        out["max_latency_ms"] = viol[0]
    if constraints.max_params is not None:
        out["max_params"] = viol[-1]
    return out


def resolve_storage_mode(storage: str | None, storage_mode: str = "auto") -> str:
    if storage_mode not in STORAGE_MODES:
        raise UserError(f"storage mode {storage_mode!r} unknown; allowed: {', '.join(STORAGE_MODES)}")
    if storage is None:
        return "memory"
    if storage_mode == "auto":  # a URL is an RDB study, anything else a journal file path
        return "direct" if "://" in str(storage) else "journal"
    return storage_mode


def run_nsga2(space: SearchSpace, evaluator: Evaluator, constraints: Constraints | None = None, *,
              trials: int = 2000, population: int = 50, seed: int = 0,
              storage: str | None = None, storage_mode: str = "auto",
              study_name: str = "donna-nas-search", extra_objective: str | None = None,
              metric_name: str | None = None,
              progress: Callable[[int, int], None] | None = None,
              fast_sampler: bool = True, stale_after_s: float = STALE_AFTER_S) -> NsgaResult:
    """Run NSGA-II until the study holds ``trials`` completed trials; return them all."""
    from donna_nas.search.storage import JournalStudy

    _quiet_optuna()
    constraints = constraints or Constraints()
    storage_mode = resolve_storage_mode(storage, storage_mode)
    if population < 2:
        raise UserError(f"--population must be at least 2, got {population}")
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    directions = [evaluator.predictor.direction, "minimize"] + (["minimize"] if extra_objective else [])
    metric_names = [metric_name or evaluator.predictor.metric, "latency_ms"]
    if extra_objective:
        metric_names.append(extra_objective)
    journal = None
    if storage_mode == "journal":
        journal = JournalStudy(Path(storage), study_name, directions, metric_names,
                               space.fingerprint())
    try:
        return _run(space, evaluator, constraints, journal, trials=trials, population=population,
                    seed=seed, storage=storage, storage_mode=storage_mode, study_name=study_name,
                    directions=directions, metric_names=metric_names,
                    extra_objective=extra_objective, progress=progress,
                    fast_sampler=fast_sampler, stale_after_s=stale_after_s)
    finally:
        if journal is not None:
            journal.close()


def _run(space, evaluator, constraints, journal, *, trials, population, seed, storage,
         storage_mode, study_name, directions, metric_names, extra_objective, progress,
         fast_sampler, stale_after_s) -> NsgaResult:
    notes: list[str] = []
    dists = distributions(space)

    def make_sampler() -> optuna.samplers.NSGAIISampler:
        if storage_mode == "direct" or not fast_sampler:
            return SeededNSGAIISampler(population_size=population, seed=seed)
        return IncrementalNSGAIISampler(dists, population_size=population, seed=seed)

    if journal is not None:
        if journal.backend.repaired_bytes:
            notes.append(f"{storage}: cut off a torn last line ({journal.backend.repaired_bytes} "
                         f"bytes) left by an interrupted write")
        study = open_study(None, study_name, directions, make_sampler())
        stored = journal.completed()
        if stored:
            study.add_trials(stored)
    else:
        study = open_study(storage if storage_mode == "direct" else None, study_name, directions,
                           make_sampler())
    shared = storage_mode == "direct"
    if shared:
        if study.metric_names != metric_names:
            study.set_metric_names(metric_names)
        stale = fail_stale_trials(study, stale_after_s)
        if stale:
            notes.append(f"marked {stale} RUNNING trial(s) of stopped workers as FAIL")
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sampler = study.sampler
    incremental = isinstance(sampler, IncrementalNSGAIISampler)
    if incremental:
        for ft in completed:
            sampler.observe(ft)
    todo = max(0, trials - (_live_before(study) if shared else len(completed)))
    pending: list[FrozenTrial] = []
    me = worker_id()

    def flush() -> None:
        if journal is not None and pending:
            journal.append(pending)
            pending.clear()

    t0 = time.perf_counter()
    done = 0
    while done < todo:
        if shared and _live_before(study) >= trials:
            break  # other workers have taken the rest of the study's trials
        trial = study.ask(dists)
        if shared:
            trial.set_user_attr(WORKER_ATTR, me)
            if _live_before(study, trial.number) >= trials:
                # another worker asked at the same moment and took the last trial
                trial.set_user_attr("over_budget", True)
                study.tell(trial, state=TrialState.FAIL)
                break
        arch = arch_from_params(space, trial.params)
        ev = evaluator.evaluate(arch)
        kill_point("nsga2:evaluated")
        trial.set_user_attr("arch", ev.arch)
        trial.set_user_attr("params", ev.params)
        trial.set_user_attr("macs", ev.macs)
        # optuna >= 5 reads constraints from the trial (<= 0 is feasible); constrained NSGA-II
        # then ranks feasible trials first and infeasible ones by total violation
        for name, value in _constraint_values(constraints, ev).items():
            trial.set_constraint(name, value)
        values = [ev.metric, ev.latency_ms]
        if extra_objective:
            values.append(float(ev.params if extra_objective == "params" else ev.macs))
        frozen = study.tell(trial, values)
        done += 1
        if incremental:
            sampler.observe(frozen)
        if journal is not None:
            pending.append(frozen)
            if len(pending) >= population:
                flush()
        if progress is not None:
            progress(done, todo)
    flush()
    seconds = time.perf_counter() - t0

    records = []
    for ft in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        ua = ft.user_attrs
        arch_text = ua.get("arch") or arch_from_params(space, ft.params).encode()
        ev = Evaluation(arch_text, float(ft.values[0]), float(ft.values[1]),
                        int(ua.get("params", 0)), int(ua.get("macs", 0)))
        records.append(TrialRecord(ft.number, ev, constraints.ok(ev.latency_ms, ev.params)))
    return NsgaResult(records, done, seconds, study_name, storage, storage_mode, notes)
