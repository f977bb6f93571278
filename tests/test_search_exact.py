"""The exact Pareto solver against brute-force enumeration, and the objectives it sums."""

import random

import numpy as np
import pytest

from donna_nas.errors import UserError
from donna_nas.search import Constraints, Evaluator, LinearBlockPredictor, SyntheticLatency, search, \
    synthetic_predictor
from donna_nas.search.exact import exact_front
from donna_nas.search.objectives import TableLatency, check_coverage
from donna_nas.search.pareto import pareto_front
from donna_nas.space import load_space


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def random_table_latency(space, seed):
    """A random additive table: every op key of the space gets a random latency."""
    from donna_nas.latency.source import all_ops

    rng = random.Random(seed)
    return TableLatency({op.key: rng.uniform(0.1, 2.0) for op in all_ops(space, space.input_size)})


def brute_front(space, ev, constraints, extra=None):
    evals = [ev.evaluate(a) for a in space.enumerate()]
    evals = [e for e in evals if constraints.ok(e.latency_ms, e.params)]
    s = -1.0 if ev.predictor.direction == "maximize" else 1.0
    cols = np.array([[s * e.metric, e.latency_ms] + ([getattr(e, extra)] if extra else [])
                     for e in evals])
    return sorted(tuple(c) for c in cols[pareto_front(cols)]), evals


def front_vectors(result_front, direction, extra=None):
    s = -1.0 if direction == "maximize" else 1.0
    return sorted((s * e.metric, e.latency_ms) + ((getattr(e, extra),) if extra else ())
                  for e in result_front)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_equals_brute_force_random_additive(tiny, seed):
    pred = synthetic_predictor(tiny, seed, noise=0.5)
    lat = random_table_latency(tiny, seed)
    ev = Evaluator(tiny, pred, lat)
    expect, evals = brute_front(tiny, ev, Constraints())
    got = exact_front(tiny, ev).front
    assert front_vectors(got, "minimize") == expect  # bit-identical sums
    # constrained: bounds at the 40th percentile of latency and the median of params
    lats = sorted(e.latency_ms for e in evals)
    pars = sorted(e.params for e in evals)
    for cons in (Constraints(max_latency_ms=lats[len(lats) * 2 // 5]),
                 Constraints(max_params=pars[len(pars) // 2]),
                 Constraints(max_latency_ms=lats[len(lats) // 2], max_params=pars[len(pars) // 3])):
        expect_c, _ = brute_front(tiny, ev, cons)
        got_c = exact_front(tiny, ev, cons).front
        assert front_vectors(got_c, "minimize") == expect_c
        assert all(cons.ok(e.latency_ms, e.params) for e in got_c)


@pytest.mark.parametrize("extra", ["params", "macs"])
def test_exact_three_objectives_equals_brute_force(tiny, extra):
    ev = Evaluator(tiny, synthetic_predictor(tiny, 5, noise=0.5), random_table_latency(tiny, 5))
    expect, _ = brute_front(tiny, ev, Constraints(), extra)
    got = exact_front(tiny, ev, extra_objective=extra).front
    assert front_vectors(got, "minimize", extra) == expect


def test_exact_maximize_direction(tiny):
    pred = synthetic_predictor(tiny, 7, noise=0.5, direction="maximize")
    ev = Evaluator(tiny, pred, random_table_latency(tiny, 7))
    expect, _ = brute_front(tiny, ev, Constraints())
    got = exact_front(tiny, ev).front
    assert front_vectors(got, "maximize") == expect
    # the fastest front member has the lowest accuracy: fronts trade one for the other
    assert got[0].metric < got[-1].metric and got[0].latency_ms < got[-1].latency_ms


def test_evaluator_matches_space_counts_and_latency():
    space = load_space("donna_depth")
    lat = SyntheticLatency()
    ev = Evaluator(space, synthetic_predictor(space, 0), lat)
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        e = ev.evaluate(arch)
        assert e.params == space.params(arch)
        assert e.macs == space.macs(arch)
        assert e.latency_ms == pytest.approx(lat.arch_latency(space, arch), rel=1e-12)
        assert e.metric == pytest.approx(ev.predictor.predict(space, arch), rel=1e-12)


def test_note10_table_with_ofa_space():
    from donna_nas.latency import LookupTable, shipped_tables_dir

    space = load_space("ofa_mbv3_w12")
    table = LookupTable.from_csv(shipped_tables_dir() / "note10_ofa_mbv3_w12.csv")
    check_coverage(space, table)
    res = search(space, synthetic_predictor(space, 0), table, Constraints(max_latency_ms=25.0))
    assert res.method == "exact" and res.front
    assert all(e.latency_ms <= 25.0 for e in res.front)
    sel = res.selected
    arch = space.decode(sel.arch)
    # the table's own whole-architecture sum (fixed head rows included) agrees
    assert sel.latency_ms == pytest.approx(table.arch_latency(space, arch), rel=1e-9)
    assert sel.metric == min(e.metric for e in res.front)
    # every sampled feasible architecture is dominated by or equal to a front member
    ev = Evaluator(space, synthetic_predictor(space, 0), table)
    rng = random.Random(1)
    for _ in range(300):
        e = ev.evaluate(space.sample(rng))
        if e.latency_ms <= 25.0:
            assert any(f.metric <= e.metric and f.latency_ms <= e.latency_ms for f in res.front)


def test_table_missing_keys_are_listed(tiny):
    from donna_nas.latency import LookupTable, MissingKeysError, shipped_tables_dir
    from donna_nas.latency.source import all_ops

    table = LookupTable.from_csv(shipped_tables_dir() / "note10_ofa_mbv3_w12.csv")
    with pytest.raises(MissingKeysError) as info:
        check_coverage(tiny, table)
    needed = {op.key for op in all_ops(tiny, tiny.input_size)}
    assert set(info.value.missing) == needed - set(table.keys())
    # a plain mapping table: the message counts and names the missing keys
    full = random_table_latency(tiny, 0).table
    dropped = sorted(full)[:2]
    partial = {k: v for k, v in full.items() if k not in dropped}
    with pytest.raises(UserError, match=f"lacks 2 of {len(full)}") as info2:
        check_coverage(tiny, TableLatency(partial))
    assert all(k in str(info2.value) for k in dropped)


def test_non_additive_predictor_falls_back_to_nsga2(tiny):
    from donna_nas.search import Predictor

    class Quadratic(Predictor):
        def predict(self, space, arch):
            return sum(c.kernel * c.depth for c in arch.block_choices) ** 0.5

    lat = random_table_latency(tiny, 0)
    with pytest.raises(UserError, match="not additive"):
        search(tiny, Quadratic(), lat, method="exact")
    res = search(tiny, Quadratic(), lat, method="auto", trials=60, population=20)
    assert res.method == "nsga2" and res.exact is None and res.hv_ratio is None


def test_a_predictor_is_a_predictor_subclass(tiny):
    """The search reads predictors through one interface: an object that merely has a
    ``predict`` method is refused with what to subclass, and a bad direction is named."""
    from donna_nas.search import Predictor

    class DuckTyped:
        direction = "minimize"

        def predict(self, space, arch):
            return 0.0

    class Sideways(Predictor):
        direction = "sideways"

        def predict(self, space, arch):
            return 0.0

    lat = random_table_latency(tiny, 0)
    with pytest.raises(UserError, match="predictor DuckTyped: not a donna_nas.search.Predictor; subclass"):
        search(tiny, DuckTyped(), lat, method="auto", trials=10, population=5)
    with pytest.raises(UserError, match="direction 'sideways'"):
        search(tiny, Sideways(), lat, method="auto", trials=10, population=5)


def test_linear_predictor_json_round_trip_and_errors(tmp_path, tiny):
    arch = tiny.sample(0)
    tok = arch.block_choices[0].token()
    pred = LinearBlockPredictor(0.5, {"b1": {tok: 0.25, "kernel=3": 0.5, "kernel=5": 0.75},
                                      "b2": {"op=ir": 0.1, "op=fused_ir": 0.2}}, strict=False)
    path = tmp_path / "predictor.json"
    pred.save(path)
    back = LinearBlockPredictor.from_json(path)
    assert back.predict(tiny, arch) == pytest.approx(pred.predict(tiny, arch))
    k = arch.block_choices[0].kernel
    expect = 0.5 + 0.25 + {3: 0.5, 5: 0.75}[k] + {"ir": 0.1, "fused_ir": 0.2}[arch.block_choices[1].op]
    assert pred.predict(tiny, arch) == pytest.approx(expect)
    strict = LinearBlockPredictor(0.0, {"b1": {"op=gconv": 1.0}})
    with pytest.raises(UserError, match="no term for block b1"):
        strict.predict(tiny, arch)
    (tmp_path / "bad.json").write_text('{"kind": "mlp", "intercept": 0, "terms": {}}')
    with pytest.raises(UserError, match="kind"):
        LinearBlockPredictor.from_json(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text('{"kind": "linear_block", "intercept": 0, "terms": {"zz": {}}}')
    with pytest.raises(UserError, match="zz"):
        LinearBlockPredictor.from_json(tmp_path / "bad2.json").check_space(tiny)
