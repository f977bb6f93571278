"""Selection for the device: the latency bound and the rule that picks the searched architecture.

The rule: among the architectures a search evaluated (the exact constrained front, or NSGA-II's
feasible trials), pick the best *predicted* metric whose latency on the chosen source is ≤ the
bound (and whose encoder params are ≤ ``max_params`` when that extra constraint is set); ties go
to the lower latency. Params are reported, never the selector.

The bound comes from exactly one of:

- ``max_latency_ms``: the bound itself;
- ``target_fps``: a bound of ``1000 / fps`` ms;
- ``speedup`` X: the teacher's latency on the *same* latency source divided by X (the teacher's
  latency is measured, looked up, or given as ``teacher_latency_ms``).

**Checking the deployed model** (``DeployedLatency``, ``check_deployed``). The latency source
prices an *encoder* as a sum of op timings (or table rows); what a user runs is the whole
network, decoder included, and op sums can be off. When a ``DeployedLatency`` is given, the
bound applies to the deployed model, timed end to end: ``--speedup`` X asks that a candidate's
whole network run in ≤ 1/X of the teacher's, the two timed side by side; ``--max-latency-ms`` /
``--target-fps`` bound the candidate's deployed latency itself. The search's front is then not
cut by the source bound (op sums mis-price whole networks); its candidates are timed, best
predicted first, by bisection along the front (latency falls as the predicted metric worsens along it, so
about log2(front size) candidates are timed, not all). The selection is the best predicted
candidate whose deployed latency meets the bound.

Nothing here imports torch; measuring the teacher lives in ``donna_nas.search.run``, timing a
task's deployed model in the task (``donna_nas.tasks.depth.deployed``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from donna_nas.errors import UserError
from donna_nas.search.objectives import Constraints, Evaluation

__all__ = ["DEFAULT_SPEEDUP", "DeployedCheck", "DeployedLatency", "LatencyBound", "LatencyTarget",
           "SelectionConfig", "TeacherLatency", "check_deployed", "fastest", "no_selection_message",
           "select_under_bound"]

DEFAULT_SPEEDUP = 1.5
"""The quickstart's and the paper table's default: at least 1.5× faster than the teacher."""

ORIGINS = ("max-latency-ms", "target-fps", "speedup", "none")


@dataclass
class SelectionConfig:
    """The selection options of ``donna-nas search`` (all unset: no latency bound)."""

    max_latency_ms: float | None = None
    target_fps: float | None = None
    speedup: float | None = None
    teacher_latency_ms: float | None = None
    max_params: int | None = None


@dataclass(frozen=True)
class TeacherLatency:
    """The teacher's latency on the search's latency source, and how it was obtained."""

    name: str
    latency_ms: float
    how: str            # "measured (...)", "looked up (TABLE)", "given (--teacher-latency-ms)"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "latency_ms": self.latency_ms, "how": self.how}


@dataclass(frozen=True)
class LatencyBound:
    """The resolved latency bound (``max_latency_ms`` ``None``: unbounded) and where it came from."""

    max_latency_ms: float | None
    origin: str                          # one of ORIGINS
    requested: float | None = None       # the option's value: ms, FPS or X
    teacher: TeacherLatency | None = None

    def describe(self) -> str:
        """``latency ≤ 3.20 ms (--speedup 1.5 × teacher resnet18 4.80 ms, measured ...)``."""
        if self.max_latency_ms is None:
            return "no latency bound"
        head = f"latency ≤ {self.max_latency_ms:.4g} ms"
        if self.origin == "target-fps":
            return f"{head} (--target-fps {self.requested:g} = 1000/{self.requested:g} ms)"
        if self.origin == "speedup" and self.teacher is not None:
            return (f"{head} (--speedup {self.requested:g}: teacher {self.teacher.name} "
                    f"{self.teacher.latency_ms:.4g} ms / {self.requested:g}; teacher latency "
                    f"{self.teacher.how})")
        return f"{head} (--max-latency-ms)"

    def to_json(self) -> dict[str, Any]:
        return {"max_latency_ms": self.max_latency_ms, "origin": self.origin,
                "requested": self.requested,
                "teacher": self.teacher.to_json() if self.teacher else None,
                "description": self.describe()}


def _positive(value: float | None, flag: str) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise UserError(f"{flag} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class LatencyTarget:
    """What was asked: at most one of ``max_latency_ms``, ``target_fps``, ``speedup``;
    ``teacher_latency_ms`` replaces measuring (or looking up) the teacher for ``speedup``."""

    max_latency_ms: float | None = None
    target_fps: float | None = None
    speedup: float | None = None
    teacher_latency_ms: float | None = None

    def __post_init__(self) -> None:
        for value, flag in ((self.max_latency_ms, "--max-latency-ms"), (self.target_fps, "--target-fps"),
                            (self.speedup, "--speedup"), (self.teacher_latency_ms, "--teacher-latency-ms")):
            _positive(value, flag)
        given = [f for f, v in (("--max-latency-ms", self.max_latency_ms),
                                ("--target-fps", self.target_fps), ("--speedup", self.speedup)) if v is not None]
        if len(given) > 1:
            raise UserError(f"{' and '.join(given)}: give one latency target, not {len(given)}")

    @classmethod
    def from_options(cls, max_latency_ms: float | None = None, target_fps: float | None = None,
                     speedup: float | None = None, teacher_latency_ms: float | None = None,
                     default_speedup: float | None = None) -> "LatencyTarget":
        """The target of the given options; ``default_speedup`` applies when none of the three
        bounds is given (the quickstart's 1.5)."""
        if max_latency_ms is None and target_fps is None and speedup is None:
            speedup = default_speedup
        return cls(max_latency_ms, target_fps, speedup, teacher_latency_ms)

    @property
    def origin(self) -> str:
        if self.max_latency_ms is not None:
            return "max-latency-ms"
        if self.target_fps is not None:
            return "target-fps"
        if self.speedup is not None:
            return "speedup"
        return "none"

    @property
    def needs_teacher(self) -> bool:
        """The teacher's latency has to be measured or looked up on the latency source."""
        return self.speedup is not None and self.teacher_latency_ms is None

    def resolve(self, teacher: TeacherLatency | None = None, teacher_name: str = "teacher") -> LatencyBound:
        """The bound in ms. ``teacher``: the teacher's latency on the search's source (needed for
        ``speedup`` unless ``teacher_latency_ms`` is given)."""
        if self.max_latency_ms is not None:
            return LatencyBound(float(self.max_latency_ms), "max-latency-ms", float(self.max_latency_ms))
        if self.target_fps is not None:
            return LatencyBound(1000.0 / self.target_fps, "target-fps", float(self.target_fps))
        if self.speedup is not None:
            if self.teacher_latency_ms is not None:
                teacher = TeacherLatency(teacher_name, float(self.teacher_latency_ms),
                                         "given (--teacher-latency-ms)")
            if teacher is None:
                raise UserError("--speedup needs the teacher's latency on the same latency source; "
                                "pass --teacher-latency-ms MS or --max-latency-ms MS instead")
            return LatencyBound(teacher.latency_ms / self.speedup, "speedup", float(self.speedup), teacher)
        return LatencyBound(None, "none")


def select_under_bound(evals: Iterable[Evaluation], direction: str, max_latency_ms: float | None = None,
                       max_params: int | None = None) -> Evaluation | None:
    """The best predicted metric among ``evals`` with latency ≤ ``max_latency_ms`` and params ≤
    ``max_params`` (``None``: unbounded); ties go to the lower latency. ``None`` when none meets."""
    cons = Constraints(max_latency_ms, max_params)
    ok = [e for e in evals if cons.ok(e.latency_ms, e.params)]
    if not ok:
        return None
    s = -1.0 if direction == "maximize" else 1.0
    return min(ok, key=lambda e: (s * e.metric, e.latency_ms))


def fastest(evals: Iterable[Evaluation], max_params: int | None = None) -> Evaluation | None:
    """The lowest-latency member of ``evals`` within ``max_params``."""
    ok = [e for e in evals if max_params is None or e.params <= max_params]
    return min(ok, key=lambda e: e.latency_ms) if ok else None


def no_selection_message(constraints: Constraints, bound: LatencyBound | None,
                         fastest_eval: Evaluation | None) -> str:
    """One line: no architecture meets the constraints, the bound and the fastest candidate."""
    parts = []
    if bound is not None and bound.max_latency_ms is not None:
        parts.append(bound.describe())
    elif constraints.max_latency_ms is not None:
        parts.append(f"latency ≤ {constraints.max_latency_ms:.4g} ms (--max-latency-ms)")
    if constraints.max_params is not None:
        parts.append(f"encoder params ≤ {constraints.max_params:,} (--max-params)")
    what = "; ".join(parts) or "none set"
    msg = f"no architecture meets the constraints ({what})"
    if fastest_eval is not None:
        msg += (f"; the fastest candidate runs {fastest_eval.latency_ms:.4g} ms "
                f"({fastest_eval.params / 1e6:.3g}M encoder params)")
    return msg + "; relax --max-latency-ms / --target-fps / --speedup / --max-params"


class DeployedLatency(ABC):
    """Times the model a task deploys (for depth: encoder + decoder, exported and, for INT8,
    quantised) of a candidate architecture and of the teacher, on the same runtime, end to end.

    Implementations cache what they timed, so a resumed run selects the same architecture."""

    @abstractmethod
    def teacher_ms(self) -> float:
        """The teacher's deployed latency (ms)."""

    @abstractmethod
    def candidate_ms(self, arch: str) -> float:
        """The deployed latency (ms) of the architecture string ``arch``."""

    @abstractmethod
    def describe(self) -> str:
        """How the timing was done, for reports (``ONNX Runtime int8 on this CPU, depth network``)."""

    def paired_ms(self, arch: str, trial: int = 0) -> tuple[float, float]:
        """(candidate, teacher) latencies timed side by side, for a ``--speedup`` bound: a load
        burst on a shared machine then slows both, and their ratio stays put. The default pairs
        the two separate timings; an implementation that can interleave them should.

        ``trial``: which of several pairings of the same candidate (0 first). An implementation
        that times for real times each new trial afresh (and caches it), so that the median of a
        few trials outvotes one lucky or unlucky pairing (``check_deployed``'s ``confirm``); the
        default's separate timings are the same for every trial."""
        return self.candidate_ms(arch), self.teacher_ms()


@dataclass
class DeployedCheck:
    """The outcome of ``check_deployed``: the bound on the deployed model, every candidate timed
    (arch, predicted metric, source latency, deployed latency, meets), and the selection."""

    bound_ms: float
    origin: str
    how: str
    teacher_ms: float | None
    checked: list[dict[str, Any]] = field(default_factory=list)
    selected: Evaluation | None = None
    candidates: int = 0
    guard: float = 0.0  # the bound_ms is the requested bound / (1 + guard)
    confirm: int = 1  # pairings per candidate under a speedup bound (the median decides)

    def describe(self) -> str:
        head = f"deployed latency ≤ {self.bound_ms:.4g} ms"
        if self.origin == "speedup" and self.teacher_ms is not None:
            head = (f"deployed latency ≤ the teacher's / speedup, timed side by side (teacher {self.teacher_ms:.4g} ms, "
                    f"median of the pairings: ≤ {self.bound_ms:.4g} ms)")
        if self.guard:
            head += f", with a {100 * self.guard:.0f}% guard band for timing noise"
        if self.confirm > 1 and self.origin == "speedup":
            head += f", each candidate's median of {self.confirm} pairings"
        return f"{head}; {self.how}; {len(self.checked)} of {self.candidates} candidates timed"

    def to_json(self) -> dict[str, Any]:
        return {"bound_ms": self.bound_ms, "origin": self.origin, "how": self.how,
                "teacher_ms": self.teacher_ms, "candidates": self.candidates, "checked": self.checked, "guard": self.guard,
                "confirm": self.confirm, "selected": self.selected.arch if self.selected else None, "description": self.describe()}

    def no_selection_message(self) -> str:
        fastest_ms = min((c["deployed_ms"] for c in self.checked), default=float("nan"))
        return (f"no architecture meets the {self.describe()}; the fastest one timed runs "
                f"{fastest_ms:.4g} ms deployed; relax --speedup / --max-latency-ms / --target-fps")


def check_deployed(front: Sequence[Evaluation], direction: str, bound: LatencyBound,
                   deployed: DeployedLatency, max_params: int | None = None,
                   max_checks: int = 16, guard: float = 0.0, confirm: int = 1) -> DeployedCheck:
    """The best predicted member of ``front`` (params ≤ ``max_params``) whose *deployed* latency
    meets the bound on the deployed model.

    ``bound.origin == "speedup"``: a candidate meets it when its deployed latency is ≤ the
    teacher's / the speedup, both timed side by side (``DeployedLatency.paired_ms``); otherwise
    when its deployed latency is ≤ ``bound.max_latency_ms``. The source latency does not filter:
    the deployed timing is the criterion. Candidates are ordered best predicted first; a bisection
    over that order times about log2(n) of them, assuming deployed latency falls along it (true of
    a Pareto front up to timing noise); at most ``max_checks`` are timed. The result's
    ``selected`` is the best predicted candidate timed within the bound (``None`` when none was).

    ``guard``: a candidate must beat the bound by this fraction (its latency ≤ bound / (1 + guard)).
    The selection sits at the bound by construction, so without a guard band a re-measurement of
    the selected model misses the bound about half the time, by the timing noise (a few percent on
    a shared CPU).

    ``confirm``: under a speedup bound, each timed candidate is paired with the teacher this many
    times (``DeployedLatency.paired_ms(arch, trial)``), and the median of its latency / bound ratios
    decides whether it meets the bound. One pairing of a network near the bound passes or fails by
    its noise (on a 2-core VM the same network's pairings have a ratio sd of about 3%), and the
    bisection keeps the first lucky pass; a median of three narrows that for 3x the timing."""
    if bound.max_latency_ms is None:
        raise ValueError("check_deployed needs a latency bound")
    if guard < 0:
        raise ValueError(f"guard must be >= 0, got {guard}")
    if confirm < 1:
        raise ValueError(f"confirm must be >= 1, got {confirm}")
    shrink = 1.0 / (1.0 + guard)
    speedup = float(bound.requested) if bound.origin == "speedup" else None
    fixed_limit = float(bound.max_latency_ms) * shrink  # the bound itself, when not a speedup
    s = -1.0 if direction == "maximize" else 1.0
    cands = sorted((e for e in front if max_params is None or e.params <= max_params),
                   key=lambda e: (s * e.metric, e.latency_ms))
    out = DeployedCheck(fixed_limit, bound.origin, deployed.describe(), None,
                        candidates=len(cands), guard=guard, confirm=confirm if speedup is not None else 1)
    timed: dict[int, bool] = {}
    teachers: list[float] = []

    def meets(i: int) -> bool:
        if i not in timed:
            e = cands[i]
            extra: dict[str, Any] = {}
            if speedup is not None:
                pairs = [tuple(float(v) for v in deployed.paired_ms(e.arch, t)) for t in range(out.confirm)]
                teachers.extend(t for _, t in pairs)
                # the median trial by latency / bound; with one trial, that trial
                ms, teacher = sorted(pairs, key=lambda p: p[0] / p[1])[(len(pairs) - 1) // 2]
                limit = teacher / speedup * shrink
                if len(pairs) > 1:
                    extra["pairings_ms"] = [list(p) for p in pairs]
            else:
                ms, teacher, limit = float(deployed.candidate_ms(e.arch)), None, fixed_limit
            timed[i] = ms <= limit
            out.checked.append({"arch": e.arch, "predicted_metric": e.metric, "source_latency_ms": e.latency_ms,
                                "deployed_ms": ms, "teacher_ms": teacher, "bound_ms": limit, "meets": timed[i],
                                **extra})
        return timed[i]

    lo, hi = 0, len(cands) - 1  # find the first index that meets (cands[hi] is the fastest)
    while lo <= hi and len(timed) < max_checks:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    if teachers:  # the teacher's latency as timed beside the candidates (median of the pairings)
        out.teacher_ms = sorted(teachers)[len(teachers) // 2]
        out.bound_ms = out.teacher_ms / speedup * shrink
    ok = sorted(i for i, m in timed.items() if m)
    out.selected = cands[ok[0]] if ok else None
    return out
