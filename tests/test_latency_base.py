"""The one latency interface: abstract methods, additivity flags, coverage checks, mappings."""

import pytest

from donna_nas.errors import UserError
from donna_nas.latency import CachedMeasurer, LatencySource, LookupTable, MappingLatency, MissingKeysError, TableRow
from donna_nas.latency.model import ModelledLatency, OpLatencyModel
from donna_nas.search import Constraints, Evaluator, SyntheticLatency, synthetic_predictor
from donna_nas.search.exact import exact_supported
from donna_nas.search.objectives import as_latency_source, check_coverage
from donna_nas.space import load_space
from donna_nas.space.ops import all_ops, block_layer_ops, incoming_widths, stem_op


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def _mapping(space, drop=0):
    keys = sorted(op.key for op in all_ops(space))
    return {k: 0.1 + i * 1e-3 for i, k in enumerate(keys[drop:])}, keys[:drop]


def test_a_source_must_state_all_three():
    class Partial(LatencySource):
        def op_latencies(self, ops, space=None, input_size=None):
            return [1.0] * len(ops)

        is_additive = True

    with pytest.raises(TypeError, match="missing"):
        Partial()

    class Full(Partial):
        def missing(self, keys):
            return []

    src = Full()
    space = load_space("tiny")
    arch = space.sample(0)
    assert src.arch_latency(space, arch) == len(space.ops(arch))
    src.check_coverage(space)  # nothing missing


def test_additivity_decides_the_exact_solver(tiny):
    pred = synthetic_predictor(tiny, 0)
    mapping, _ = _mapping(tiny)
    table = LookupTable([TableRow(k, v, 0.0, "cpu", "fp32", "rt", "test") for k, v in mapping.items()])
    model = OpLatencyModel({"*": [0.0] * 6 + [0.1]}, 1)
    for src in (SyntheticLatency(), MappingLatency(mapping), table, ModelledLatency(table, model)):
        assert src.is_additive and exact_supported(pred, src) is None

    class FakeOrt:
        precision, device = "fp32", "cpu"

    cached = CachedMeasurer(FakeOrt(), "/nonexistent/cache.csv")
    assert not cached.is_additive and "measures on demand" in exact_supported(pred, cached)
    assert cached.missing(["any"]) == []


def test_mapping_latency_lists_every_missing_key(tiny):
    full, _ = _mapping(tiny)
    part, dropped = _mapping(tiny, drop=3)
    src = MappingLatency(part, source="mine.csv")
    assert src.missing(sorted(full)) == dropped
    with pytest.raises(MissingKeysError, match=f"mine.csv: latency table lacks 3 of {len(full)}") as e:
        src.check_coverage(tiny)
    assert e.value.missing == dropped
    with pytest.raises(MissingKeysError):
        src.op_latencies([op for op in all_ops(tiny) if op.key in dropped])
    # a plain dict works wherever a source is expected
    check_coverage(tiny, full)
    assert isinstance(as_latency_source(full), MappingLatency)
    with pytest.raises(UserError, match="not a latency source"):
        as_latency_source([1.0, 2.0])


def test_block_terms_sum_to_the_architecture(tiny):
    mapping, _ = _mapping(tiny)
    src = MappingLatency(mapping)
    ev = Evaluator(tiny, synthetic_predictor(tiny, 0), mapping)
    for seed in range(10):
        arch = tiny.sample(seed)
        cin, total = tiny.stem.channels, src.stem_latency(tiny)
        for i, bc in enumerate(arch.block_choices):
            assert cin in incoming_widths(tiny, i)
            assert src.block_latency(tiny, i, bc, cin) == pytest.approx(
                sum(mapping[o.key] for o in block_layer_ops(tiny, i, bc, cin)))
            total += src.block_latency(tiny, i, bc, cin)
            cin = bc.out_channels
        assert total == pytest.approx(src.arch_latency(tiny, arch), rel=1e-12)
        assert ev.evaluate(arch).latency_ms == pytest.approx(total, rel=1e-12)
    assert stem_op(tiny).key in mapping


def test_constraint_violations_are_named():
    c = Constraints(max_latency_ms=10.0, max_params=1000)
    assert c.violations(12.0, 900) == {"max_latency_ms": 2.0, "max_params": -100.0}
    assert not c.ok(12.0, 900) and c.ok(10.0, 1000)
    assert Constraints(max_params=5).violations(99.0, 7) == {"max_params": 2.0}
    assert Constraints().violations(1.0, 1) == {}


def test_recorded_latencies_and_precision_come_from_the_interface(tiny):
    """Which ops a source answers from a recorded row: all of a table's, only the table's part of a
    model-filled source, none of a formula; no attribute probing needed."""
    mapping, dropped = _mapping(tiny, drop=3)
    table = LookupTable([TableRow(k, v, 0.0, "cpu", "int8", "rt", "test") for k, v in mapping.items()])
    model = OpLatencyModel({"*": [0.0] * 6 + [0.1]}, 1)
    keys = dropped + sorted(mapping)[:2]
    want = {k: mapping[k] for k in sorted(mapping)[:2]}
    assert table.recorded_latencies(keys) == want
    assert MappingLatency(mapping).recorded_latencies(keys) == want
    filled = ModelledLatency(table, model)
    assert filled.recorded_latencies(keys) == want and filled.missing(keys) == []
    assert SyntheticLatency().recorded_latencies(keys) == {}
    assert (table.precision, filled.precision, SyntheticLatency().precision) == ("int8", "int8", "")
