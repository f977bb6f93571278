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

Nothing here imports torch; measuring the teacher lives in ``donna_nas.search.run``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from donna_nas.errors import UserError
from donna_nas.search.objectives import Constraints, Evaluation

__all__ = ["DEFAULT_SPEEDUP", "LatencyBound", "LatencyTarget", "SelectionConfig", "TeacherLatency",
           "fastest", "no_selection_message", "select_under_bound"]

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
