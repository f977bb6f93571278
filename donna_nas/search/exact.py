"""Exact Pareto front for objectives that are additive over blocks (linear predictor + LUT).

An architecture's metric, latency, params and MACs are sums of per-block terms, but a block's
term depends on its incoming width, i.e. on the previous block's ``out_channels``. So the sums
form a chain, and the front is computed by dynamic programming over blocks whose state is the
last block's ``out_channels`` (a handful of values). Each state keeps the Pareto set of partial
sums (with back-pointers); a partial solution dominated by another one *in the same state* can
never complete into a front member, because both share every completion. Per (cin, cout) the
block's own choices are pruned the same way before they are combined.

Dimensions: the metric (negated when maximised) and latency always; params join as a third
dimension when ``max_params`` is set (dominance must then include params, or a partial solution
that is slower but smaller could be pruned although it is the only feasible one) or when params
or MACs are asked for as an objective. Constraints also prune partial sums whose cheapest
completion already breaks a bound. The result is exact, not approximate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from donna_nas.errors import UserError
from donna_nas.search.objectives import (
    Constraints,
    Evaluation,
    Evaluator,
    incoming_widths,
    is_additive_predictor,
    latency_is_additive,
)
from donna_nas.search.pareto import non_dominated_mask, pareto_front
from donna_nas.space.space import Architecture, SearchSpace

EXTRA_OBJECTIVES = ("params", "macs")


@dataclass
class ExactResult:
    front: list[Evaluation]            # sorted by latency, constraint-satisfying, non-dominated
    seconds: float
    partial_solutions: int             # partial sums kept over all blocks (a size measure)
    dims: tuple[str, ...] = field(default_factory=tuple)


def exact_supported(predictor, latency) -> str | None:
    """``None`` when the exact solver applies, else the reason it does not."""
    if not is_additive_predictor(predictor):
        return "the predictor is not additive over blocks"
    if not latency_is_additive(latency):
        return ("the latency source measures on demand, not from a lookup table (the exact solver "
                "needs every op's latency up front: measure a table with `donna-nas latency "
                "measure` and pass --latency-table)")
    return None


def exact_front(space: SearchSpace, evaluator: Evaluator, constraints: Constraints | None = None,
                extra_objective: str | None = None) -> ExactResult:
    """The exact constrained Pareto front of (metric, latency[, extra_objective])."""
    t0 = time.perf_counter()
    constraints = constraints or Constraints()
    why = exact_supported(evaluator.predictor, evaluator.latency)
    if why:
        raise UserError(f"exact solver not applicable: {why}; use --method nsga2")
    if extra_objective not in (None, *EXTRA_OBJECTIVES):
        raise UserError(f"unknown extra objective {extra_objective!r}; allowed: {', '.join(EXTRA_OBJECTIVES)}")
    sign = -1.0 if evaluator.predictor.direction == "maximize" else 1.0
    dims = ["metric", "latency"]
    if extra_objective:
        dims.append(extra_objective)
    if constraints.max_params is not None and "params" not in dims:
        dims.append("params")
    nd = len(dims)

    def vec(metric: float, ms: float, params: int, macs: int) -> list[float]:
        out = [sign * metric, ms]
        for d in dims[2:]:
            out.append(float(params if d == "params" else macs))
        return out

    nb = len(space.blocks)
    choices = [list(b.all_choices()) for b in space.blocks]
    # per block: {(cin, cout): (choice indices, term vectors)}, pruned within the pair
    terms: list[dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]] = []
    min_lat: list[dict[tuple[int, int], float]] = []
    min_par: list[dict[tuple[int, int], float]] = []
    for i in range(nb):
        per: dict[tuple[int, int], tuple[list[int], list[list[float]], list[int]]] = {}
        for cin in incoming_widths(space, i):
            for ci, bc in enumerate(choices[i]):
                ms, p, m = evaluator.block_cost(i, bc, cin)
                mt = evaluator.metric_term(i, bc, cin)
                entry = per.setdefault((cin, bc.out_channels), ([], [], []))
                entry[0].append(ci)
                entry[1].append(vec(mt, ms, p, m))
                entry[2].append(p)
        pruned, lat_min, par_min = {}, {}, {}
        for key, (idx, vals, pars) in per.items():
            v = np.asarray(vals, dtype=float)
            lat_min[key] = float(v[:, 1].min())
            par_min[key] = float(min(pars))
            keep = non_dominated_mask(v, unique=True)
            pruned[key] = (np.asarray(idx)[keep], v[keep])
        terms.append(pruned)
        min_lat.append(lat_min)
        min_par.append(par_min)

    # cheapest completion (latency, params) from the input of block i given its incoming width
    rem_lat: list[dict[int, float]] = [dict() for _ in range(nb + 1)]
    rem_par: list[dict[int, float]] = [dict() for _ in range(nb + 1)]
    for c in space.blocks[-1].out_channels:
        rem_lat[nb][c] = 0.0
        rem_par[nb][c] = 0.0
    for i in reversed(range(nb)):
        for cin in incoming_widths(space, i):
            rem_lat[i][cin] = min(min_lat[i][(cin, co)] + rem_lat[i + 1][co]
                                  for co in space.blocks[i].out_channels)
            rem_par[i][cin] = min(min_par[i][(cin, co)] + rem_par[i + 1][co]
                                  for co in space.blocks[i].out_channels)

    li = dims.index("latency")
    pi = dims.index("params") if "params" in dims else None
    stem_vec = vec(evaluator.predictor.intercept, evaluator.stem_ms, evaluator.stem_params,
                   evaluator.stem_macs)
    # the predictor intercept and stem costs go in first, so sums match Evaluator.evaluate bit for bit
    states: dict[int, np.ndarray] = {space.stem.channels: np.asarray([stem_vec], dtype=float)}
    back: list[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    kept_total = 0
    eps = 1e-9
    for i in range(nb):
        new_states: dict[int, np.ndarray] = {}
        new_back: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for cout in space.blocks[i].out_channels:
            vals, prev_state, prev_idx, choice_idx = [], [], [], []
            for cin, v in states.items():
                if (cin, cout) not in terms[i]:
                    continue
                cidx, t = terms[i][(cin, cout)]
                cand = (v[:, None, :] + t[None, :, :]).reshape(-1, nd)
                vals.append(cand)
                prev_state.append(np.full(len(cand), cin))
                prev_idx.append(np.repeat(np.arange(len(v)), len(t)))
                choice_idx.append(np.tile(cidx, len(v)))
            if not vals:
                continue
            cand = np.concatenate(vals)
            ps, pidx, cidx = (np.concatenate(prev_state), np.concatenate(prev_idx),
                              np.concatenate(choice_idx))
            ok = np.ones(len(cand), dtype=bool)
            if constraints.max_latency_ms is not None:
                ok &= cand[:, li] + rem_lat[i + 1][cout] <= constraints.max_latency_ms + eps
            if constraints.max_params is not None:
                ok &= cand[:, pi] + rem_par[i + 1][cout] <= constraints.max_params + eps
            cand, ps, pidx, cidx = cand[ok], ps[ok], pidx[ok], cidx[ok]
            if len(cand) == 0:
                continue
            keep = non_dominated_mask(cand, unique=True)
            new_states[cout] = cand[keep]
            new_back[cout] = (ps[keep], pidx[keep], cidx[keep])
            kept_total += int(keep.sum())
        states = new_states
        back.append(new_back)
        if not states:
            return ExactResult([], time.perf_counter() - t0, kept_total, tuple(dims))

    # final front over all end states, in the objective dimensions only
    finals, refs = [], []
    for cout, v in states.items():
        finals.append(v)
        refs.extend((cout, j) for j in range(len(v)))
    allv = np.concatenate(finals)
    obj_cols = [0, 1] + ([2] if extra_objective else [])
    front_idx = pareto_front(allv[:, obj_cols], unique=True)
    evals = []
    for k in front_idx:
        cout, j = refs[k]
        picks = [0] * nb
        state, idx = cout, j
        for b in reversed(range(nb)):
            ps, pidx, cidx = back[b][state]
            picks[b] = int(cidx[idx])
            state, idx = int(ps[idx]), int(pidx[idx])
        arch = Architecture(space.block_names, tuple(choices[b][picks[b]] for b in range(nb)))
        ev = evaluator.evaluate(arch)
        evals.append(ev)
    evals.sort(key=lambda e: (e.latency_ms, sign * e.metric))
    return ExactResult(evals, time.perf_counter() - t0, kept_total, tuple(dims))
