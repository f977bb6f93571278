"""What a search optimises: a predicted task metric, latency, params and MACs of an architecture.

The search never builds networks. A block's cost depends on its own choice and on its incoming
width (the previous block's ``out_channels``; the stem's width for block 1), so every per-block
quantity here is keyed by ``(block index, choice, cin)`` and cached: evaluating an architecture is
then a handful of dictionary look-ups, and the exact solver can reuse the same terms.

Predictors subclass ``Predictor`` (``predict``); additive ones subclass ``AdditivePredictor``
(``intercept`` + ``block_term``), which the exact solver needs. ``LinearBlockPredictor`` is the
additive form the supernet stage writes to ``RUN/predictor.json``. Latency comes from any
``donna_nas.latency.LatencySource`` (or a mapping ``op key -> ms``, as ``MappingLatency``).
"""

from __future__ import annotations

import abc
import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donna_nas.errors import UserError
from donna_nas.runtime.config_file import read_text
from donna_nas.latency.base import LatencySource, MappingLatency, as_latency_source
from donna_nas.latency.synthetic import SyntheticLatency
from donna_nas.space.ops import OpInstance, block_input_hw, incoming_widths, layer_ops, stem_op
from donna_nas.space.space import Architecture, BlockChoice, SearchSpace

__all__ = ["AdditivePredictor", "Constraints", "Evaluation", "Evaluator", "LatencySource",
           "LinearBlockPredictor", "MappingLatency", "Predictor", "SyntheticLatency",
           "TableLatency", "as_latency_source", "check_coverage", "check_predictor", "incoming_widths",
           "is_additive_predictor", "latency_is_additive", "synthetic_predictor"]

DIRECTIONS = ("minimize", "maximize")


# --------------------------------------------------------------------------- predictors
class Predictor(abc.ABC):
    """Predicts the task metric of an architecture: the one interface the search reads a
    predictor through (as optuna's samplers subclass ``BaseSampler``).

    ``direction`` says whether lower is better (``minimize``, e.g. Sq Rel) or higher
    (``maximize``, e.g. top-1); ``metric`` names the metric in reports. A subclass that knows
    which space it was fitted on overrides ``check_space``, so that a predictor from another
    space fails before the search instead of predicting nonsense."""

    direction: str = "minimize"
    metric: str = "metric"
    is_additive: bool = False

    @abc.abstractmethod
    def predict(self, space: SearchSpace, arch: Architecture) -> float:
        """The predicted metric of ``arch`` (an architecture of ``space``)."""

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``UserError`` when this predictor cannot score architectures of ``space``; the
        default accepts every space."""


class AdditivePredictor(Predictor):
    """A constant plus one term per block, the term depending on the block's choice and its
    incoming width only: the exact solver needs this form."""

    is_additive: bool = True
    intercept: float  # set by the subclass (no class default: dataclass subclasses would inherit it)

    @abc.abstractmethod
    def block_term(self, space: SearchSpace, index: int, choice: BlockChoice, cin: int) -> float:
        """Block ``index``'s contribution with ``choice`` after a block of ``cin`` output channels."""

    def predict(self, space: SearchSpace, arch: Architecture) -> float:
        cin = space.stem.channels
        total = self.intercept
        for i, bc in enumerate(arch.block_choices):
            total += self.block_term(space, i, bc, cin)
            cin = bc.out_channels
        return total


def is_additive_predictor(p: Predictor) -> bool:
    """An ``AdditivePredictor`` whose ``is_additive`` is true."""
    return isinstance(p, AdditivePredictor) and bool(p.is_additive)


def check_predictor(predictor: Any) -> Predictor:
    """``predictor`` itself, or a ``UserError`` saying what a predictor must be."""
    if not isinstance(predictor, Predictor):
        raise UserError(f"predictor {type(predictor).__name__}: not a donna_nas.search.Predictor; "
                        "subclass Predictor (predict) or AdditivePredictor (intercept, block_term), "
                        "or load RUN/predictor.json with LinearBlockPredictor.from_json")
    if predictor.direction not in DIRECTIONS:
        raise UserError(f"predictor {type(predictor).__name__}: direction {predictor.direction!r}; "
                        f"allowed: {', '.join(DIRECTIONS)}")
    return predictor


@dataclass
class LinearBlockPredictor(AdditivePredictor):
    """intercept + Σ_blocks term(block, choice).

    ``terms[block_name]`` maps keys to coefficients; a key matches a block choice either as its
    full token (``ir_d2_k5_e4_c32_se_relu``, a per-choice table, e.g. coef_i · NSR(i, choice)) or
    as an option feature ``option=value`` (``kernel=5``, ``se=true``). A block's term is the sum
    of every matching key, so per-choice tables, one-hot linear models and mixtures all fit.
    ``default`` is used for a block choice that matches no key when ``strict`` is false.
    """

    intercept: float
    terms: dict[str, dict[str, float]]
    direction: str = "minimize"
    metric: str = "metric"
    strict: bool = True
    source: str = "<python>"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise UserError(f"{self.source}: field 'direction' is {self.direction!r}; "
                            f"allowed: {', '.join(DIRECTIONS)}")

    def block_term(self, space: SearchSpace, index: int, choice: BlockChoice, cin: int = 0) -> float:
        key = (space.blocks[index].name, choice)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        name = space.blocks[index].name
        table = self.terms.get(name, {})
        token = choice.token()
        total, matched = 0.0, False
        if token in table:
            total += table[token]
            matched = True
        for opt, value in (("op", choice.op), ("kernel", choice.kernel), ("expand", choice.expand),
                           ("depth", choice.depth), ("out_channels", choice.out_channels),
                           ("se", choice.se), ("act", choice.act)):
            k = f"{opt}={_feature_value(value)}"
            if k in table:
                total += table[k]
                matched = True
        if not matched and self.strict and table:
            raise UserError(f"{self.source}: predictor has no term for block {name} choice "
                            f"{token!r}; add it to terms.{name} (or an option=value feature)")
        self._cache[key] = total
        return total

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict[str, Any]:
        return {"kind": "linear_block", "metric": self.metric, "direction": self.direction,
                "intercept": self.intercept, "terms": self.terms}

    def save(self, path: str | Path) -> None:
        from donna_nas.runtime.io import write_json_atomic

        write_json_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, path_or_obj: str | Path | dict) -> "LinearBlockPredictor":
        """Load ``{"kind": "linear_block", "intercept": .., "terms": {block: {key: coef}}}``."""
        if isinstance(path_or_obj, dict):
            obj, src = path_or_obj, "<dict>"
        else:
            path = Path(path_or_obj)
            src = str(path)
            if not path.exists():
                raise UserError(f"{path}: predictor file not found (created by "
                                f"`donna-nas build-supernet`, or pass --predictor FILE)")
            try:
                obj = json.loads(read_text(path, "restore it or rerun `donna-nas build-supernet`"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{src}: a predictor must be a JSON object with 'kind', 'intercept', 'terms'")
        if obj.get("kind") != "linear_block":
            raise UserError(f"{src}: field 'kind' is {obj.get('kind')!r}; this version reads "
                            f"'linear_block' predictors")
        for key in ("intercept", "terms"):
            if key not in obj:
                raise UserError(f"{src}: missing field '{key}'")
        terms = obj["terms"]
        if not isinstance(terms, dict) or not all(isinstance(v, dict) for v in terms.values()):
            raise UserError(f"{src}: field 'terms' must map block names to {{key: coefficient}}")
        try:
            clean = {str(b): {str(k): float(v) for k, v in t.items()} for b, t in terms.items()}
            intercept = float(obj["intercept"])
        except (TypeError, ValueError):
            raise UserError(f"{src}: 'intercept' and every coefficient in 'terms' must be numbers") from None
        bad = [b for b, t in clean.items() if not all(math.isfinite(v) for v in t.values())]
        if bad or not math.isfinite(intercept):
            raise UserError(f"{src}: NaN or infinite coefficient (block {bad[0] if bad else 'intercept'}); "
                            "refit the predictor (`donna-nas build-supernet --resume`) or restore the file")
        return cls(intercept=intercept, terms=clean, direction=obj.get("direction", "minimize"),
                   metric=str(obj.get("metric", "metric")), strict=bool(obj.get("strict", True)),
                   source=src)

    def check_space(self, space: SearchSpace) -> None:
        """Fail early (naming the block) when the predictor was made for another space."""
        unknown = sorted(set(self.terms) - set(space.block_names))
        if unknown:
            raise UserError(f"{self.source}: terms name block(s) {unknown} that space "
                            f"{space.name!r} does not have ({', '.join(space.block_names)})")


def _feature_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def synthetic_predictor(space: SearchSpace, seed: int = 0, noise: float = 0.02,
                        direction: str = "minimize") -> LinearBlockPredictor:
    """A random additive stand-in for a fitted predictor (tests, benchmarks, demos).

    Bigger choices (more depth, expansion, width, larger kernels, SE, swish) lower the metric
    with diminishing returns, plus seeded per-feature noise: the kind of trade-off against
    latency a real NSR-based predictor shows, with a non-trivial front.
    """
    rng = random.Random(seed)
    nb = len(space.blocks)
    terms: dict[str, dict[str, float]] = {}
    for i, block in enumerate(space.blocks):
        weight = 0.2 * (1.0 + 0.5 * i / max(1, nb - 1))
        t: dict[str, float] = {}
        for opt, values in block.options().items():
            for v in values:
                if opt in ("kernel", "expand", "depth", "out_channels"):
                    rel = float(v) / max(float(x) for x in values)
                    base = -weight * 0.25 * math.log1p(3 * rel)
                elif opt == "se":
                    base = -weight * 0.05 if v else 0.0
                elif opt == "act":
                    base = {"relu": 0.0, "hswish": -0.01, "swish": -0.015}[v] * weight * 4
                else:  # op
                    base = {"ir": 0.0, "fused_ir": -0.01, "gconv": 0.005}[v] * weight * 4
                t[f"{opt}={_feature_value(v)}"] = base + rng.gauss(0.0, noise * weight)
        terms[block.name] = t
    # intercept chosen so that the best architecture scores 0.6 and the worst around 1 (Sq Rel-like)
    best = sum(min(v for k, v in t.items() if k.startswith(f"{opt}="))
               for t, b in zip(terms.values(), space.blocks) for opt in b.options())
    pred = LinearBlockPredictor(intercept=0.6 - best, terms=terms, direction="minimize",
                                metric="synthetic_sq_rel", source="<synthetic>")
    if direction == "maximize":
        pred = LinearBlockPredictor(intercept=1.0 - pred.intercept,
                                    terms={b: {k: -v for k, v in t.items()} for b, t in terms.items()},
                                    direction="maximize", metric="synthetic_top1",
                                    source="<synthetic>")
    return pred


# --------------------------------------------------------------------------- latency
def latency_is_additive(src: LatencySource) -> bool:
    """True when the whole space's latency is available without measuring (``is_additive``:
    a lookup table, a fitted latency model), so the exact solver may read every block term."""
    return as_latency_source(src).is_additive


def check_coverage(space: SearchSpace, src: LatencySource | Mapping[str, float],
                   input_size: tuple[int, int] | None = None) -> None:
    """Fail before searching when a table lacks op keys the space needs (all of them listed in
    the error); sources that measure on demand pass (``LatencySource.check_coverage``)."""
    as_latency_source(src).check_coverage(space, input_size)


def TableLatency(table: LatencySource | Mapping[str, float], source: str = "<table>") -> LatencySource:
    """Deprecated: a ``LookupTable`` is a latency source itself, and a mapping ``op key -> ms``
    is ``donna_nas.latency.MappingLatency``. Returns the source ``as_latency_source`` makes."""
    return as_latency_source(table, source=source)


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    """Objective values of one architecture. ``metric`` is in the predictor's own direction."""

    arch: str
    metric: float
    latency_ms: float
    params: int
    macs: int


@dataclass
class Constraints:
    """Upper bounds an architecture must meet; ``None`` means unbounded."""

    max_latency_ms: float | None = None
    max_params: int | None = None

    def violations(self, latency_ms: float, params: float) -> dict[str, float]:
        """optuna-style constraint values by bound name (``max_latency_ms``, ``max_params``),
        set bounds only: <= 0 means satisfied."""
        out: dict[str, float] = {}
        if self.max_latency_ms is not None:
            out["max_latency_ms"] = latency_ms - self.max_latency_ms
        if self.max_params is not None:
            out["max_params"] = float(params) - float(self.max_params)
        return out

    def ok(self, latency_ms: float, params: float) -> bool:
        return all(v <= 1e-9 for v in self.violations(latency_ms, params).values())

    def to_json(self) -> dict[str, Any]:
        return {"max_latency_ms": self.max_latency_ms, "max_params": self.max_params}


class Evaluator:
    """Computes ``Evaluation``s with per-(block, choice, cin) caches.

    Op latencies are asked of the source once per distinct op instance (shared across blocks and
    choices), and an architecture's latency is stem + blocks + the source's fixed ops (a
    classification head a table declares).
    """

    def __init__(self, space: SearchSpace, predictor: Predictor,
                 latency: LatencySource | Mapping[str, float],
                 input_size: tuple[int, int] | None = None):
        self.space = space
        self.predictor = predictor
        self.latency = as_latency_source(latency)
        self.input_size = tuple(input_size or space.input_size)
        self.additive_metric = is_additive_predictor(predictor)
        self._block: dict[tuple[int, BlockChoice, int], tuple[float, int, int]] = {}
        self._metric_term: dict[tuple[int, BlockChoice, int], float] = {}
        self._op_cost: dict[OpInstance, tuple[float, int, int]] = {}
        self._hw = [block_input_hw(space, i, self.input_size) for i in range(len(space.blocks))]
        stem = stem_op(space, self.input_size)
        self.stem_params, self.stem_macs = stem.params, stem.macs
        self._stem_ms: float | None = None
        self.evaluations = 0

    @property
    def stem_ms(self) -> float:
        """Stem latency plus the source's fixed ops."""
        if self._stem_ms is None:
            self._stem_ms = (float(self.latency.stem_latency(self.space, self.input_size))
                             + float(self.latency.fixed_latency(self.input_size)))
        return self._stem_ms

    def block_cost(self, index: int, choice: BlockChoice, cin: int) -> tuple[float, int, int]:
        """(latency ms, params, MACs) of one block."""
        key = (index, choice, cin)
        hit = self._block.get(key)
        if hit is not None:
            return hit
        h, w = self._hw[index]
        ops = layer_ops(choice, cin, self.space.blocks[index].stride, h, w)
        per_op = self._op_cost
        new = [op for op in dict.fromkeys(ops) if op not in per_op]
        if new:
            lats = self.latency.op_latencies(new, self.space, self.input_size)
            for op, ms in zip(new, lats):
                per_op[op] = (float(ms), op.params, op.macs)
        costs = [per_op[op] for op in ops]
        hit = (sum(c[0] for c in costs), sum(c[1] for c in costs), sum(c[2] for c in costs))
        self._block[key] = hit
        return hit

    def metric_term(self, index: int, choice: BlockChoice, cin: int) -> float:
        key = (index, choice, cin)
        hit = self._metric_term.get(key)
        if hit is None:
            hit = float(self.predictor.block_term(self.space, index, choice, cin))
            self._metric_term[key] = hit
        return hit

    def evaluate(self, arch: Architecture) -> Evaluation:
        self.evaluations += 1
        cin = self.space.stem.channels
        ms, params, macs = self.stem_ms, self.stem_params, self.stem_macs
        metric = float(self.predictor.intercept) if self.additive_metric else 0.0
        for i, bc in enumerate(arch.block_choices):
            b_ms, b_p, b_m = self.block_cost(i, bc, cin)
            ms += b_ms
            params += b_p
            macs += b_m
            if self.additive_metric:
                metric += self.metric_term(i, bc, cin)
            cin = bc.out_channels
        if not self.additive_metric:
            metric = float(self.predictor.predict(self.space, arch))
        return Evaluation(arch.encode(), metric, ms, params, macs)
