"""Predict the latency of op instances nobody measured, from the ones somebody did.

A DONNA-size space has ~10^4 distinct op instances (``donna_depth`` at 192x640: 9,937), about an
hour of ONNX Runtime timing on a laptop core, while a search and its exact Pareto solver need a
latency for every one of them. Like nn-Meter's kernel-level predictors, ``OpLatencyModel`` learns
per-op latency from a few hundred measured rows and fills in the rest.

The model is physical rather than a black box: for each op type, latency is a non-negative
combination of the work the op does (dense MACs, depthwise/grouped MACs, elements read and written
by its convolutions, elements passed through a non-ReLU activation, a squeeze-excite term) plus a
fixed per-call overhead, fitted by non-negative least squares with residuals weighted by
1/sqrt(latency): between absolute errors (dominated by the few largest ops) and relative errors
(which bias large ops low, and large ops dominate a model's sum; measured in
``experiments/bench_latency_model.py``). Measured rows are always used as they are; the
model only fills the gaps (``ModelledLatency``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from donna_nas.errors import UserError
from donna_nas.latency.base import LatencySource
from donna_nas.runtime.io import write_json_atomic
from donna_nas.space.ops import OpInstance

FEATURES = ("dense_macs", "spatial_macs", "memory", "act_swish", "act_hswish", "se", "calls")
_SCALE = np.array([1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1.0])  # per-M units keep NNLS well scaled

_KEY_RE = re.compile(r"^(?P<kind>[a-z_]+):(?P<fields>.+)$")


def op_from_key(key: str) -> OpInstance:
    """Inverse of ``OpInstance.key``."""
    m = _KEY_RE.match(key)
    if not m:
        raise UserError(f"latency key {key!r} is not of the form kind:field=value,...")
    fields = dict(kv.split("=", 1) for kv in m.group("fields").split(","))
    try:
        expand = float(fields.get("e", 1))
        return OpInstance(kind=m.group("kind"), cin=int(fields["cin"]), cout=int(fields["cout"]),
                          kernel=int(fields["k"]), stride=int(fields["s"]), h=int(fields["h"]),
                          w=int(fields["w"]), act=fields["act"],
                          expand=int(expand) if expand.is_integer() else expand,
                          se=bool(int(fields.get("se", 0))))
    except (KeyError, ValueError) as exc:
        raise UserError(f"latency key {key!r}: missing or bad field ({exc})") from None


def op_features(op: OpInstance) -> np.ndarray:
    """Work counts of one op instance (see the module docstring), in ``FEATURES`` order, summed
    over its convolutions (``OpInstance.convs``): dense and grouped/depthwise MACs, elements read
    by the first conv and written by every conv, elements through the activation."""
    convs = op.convs
    dense = sum(c.macs for c in convs if not c.depthwise)
    spatial = sum(c.macs for c in convs if c.depthwise)
    memory = convs[0].cin * op.h * op.w + sum(c.cout * c.out_hw[0] * c.out_hw[1] for c in convs)
    act_elems = sum(c.cout * c.out_hw[0] * c.out_hw[1] for c in convs if c.act)
    ho, wo = op.out_hw
    se = op.hidden * ho * wo if op.se else 0
    return np.array([dense, spatial, memory,
                     act_elems if op.act == "swish" else 0,
                     act_elems if op.act == "hswish" else 0,
                     se, 1.0], dtype=float)


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares, residuals weighted by 1/sqrt(y): min Σ (x·c − y)²/y, c ≥ 0."""
    from scipy.optimize import nnls

    w = 1.0 / np.sqrt(np.maximum(y, 1e-6))
    coef, _ = nnls(x * w[:, None], y * w)
    return coef


@dataclass
class OpLatencyModel:
    """Per-op-type non-negative linear model of latency (ms) on work counts."""

    coefs: dict[str, list[float]]
    fitted_on: int
    device: str = ""
    precision: str = ""

    @classmethod
    def fit(cls, ops: Sequence[OpInstance], latencies_ms: Sequence[float], device: str = "",
            precision: str = "") -> "OpLatencyModel":
        if len(ops) != len(latencies_ms) or not ops:
            raise UserError("latency model: need the same, non-zero number of ops and latencies")
        y_all = np.asarray(latencies_ms, float)
        coefs: dict[str, list[float]] = {}
        kinds = sorted({op.kind for op in ops})
        pooled = _nnls_relative(np.stack([op_features(o) * _SCALE for o in ops]), y_all)
        for kind in kinds:
            idx = [i for i, o in enumerate(ops) if o.kind == kind]
            x = np.stack([op_features(ops[i]) * _SCALE for i in idx])
            # too few rows of a kind to fit its own model: use the model pooled over all kinds
            coef = _nnls_relative(x, y_all[idx]) if len(idx) >= 3 * len(FEATURES) else pooled
            coefs[kind] = coef.tolist()
        coefs["*"] = pooled.tolist()
        return cls(coefs, len(ops), device, precision)

    def predict(self, op: OpInstance) -> float:
        coef = np.asarray(self.coefs.get(op.kind, self.coefs["*"]))
        return float(max(op_features(op) * _SCALE @ coef, 1e-4))

    def to_json(self) -> dict:
        return {"kind": "op_latency_model", "features": list(FEATURES), "coefs": self.coefs,
                "fitted_on": self.fitted_on, "device": self.device, "precision": self.precision}

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "OpLatencyModel":
        obj = json.loads(Path(path).read_text())
        if obj.get("kind") != "op_latency_model" or list(obj.get("features", [])) != list(FEATURES):
            raise UserError(f"{path}: not a donna-nas op latency model (kind/features differ)")
        return cls(obj["coefs"], int(obj["fitted_on"]), obj.get("device", ""), obj.get("precision", ""))


def fit_from_table(table) -> OpLatencyModel:
    """Fit on every (non-fixed) row of a ``LookupTable`` whose key is a donna-nas op key."""
    ops, lat = [], []
    for key, row in table.rows.items():
        if getattr(row, "fixed_for", ""):
            continue
        try:
            op = op_from_key(key)
        except UserError:
            continue
        ops.append(op)
        lat.append(row.latency_ms)
    if len(ops) < 10:
        raise UserError(f"{table.name}: {len(ops)} op rows are too few to fit a latency model "
                        f"(measure at least ~100 with `donna-nas latency measure --archs K`)")
    return OpLatencyModel.fit(ops, lat, table.device, table.precision)


class ModelledLatency(LatencySource):
    """Measured rows where the table has them, the fitted model everywhere else."""

    is_additive = True  # every op has a value without measuring: the exact solver may read them all

    def __init__(self, table, model: OpLatencyModel | None = None):
        self.table = table
        self.model = model or fit_from_table(table)

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        rows = self.table.rows
        return [rows[op.key].latency_ms if op.key in rows else self.model.predict(op) for op in ops]

    def missing(self, keys) -> list[str]:
        return []  # the model fills every op the table lacks

    def recorded_latencies(self, keys) -> dict[str, float]:
        return self.table.recorded_latencies(keys)  # the table's rows; modelled ops are not recorded

    @property
    def precision(self) -> str:
        return self.table.precision

    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        return self.table.fixed_latency(input_size)


def cross_validate(ops: Sequence[OpInstance], latencies_ms: Sequence[float], folds: int = 5,
                   seed: int = 0) -> np.ndarray:
    """Held-out relative errors (predicted/measured − 1) of k-fold cross-validation."""
    y = np.asarray(latencies_ms, float)
    order = np.random.default_rng(seed).permutation(len(ops))
    errors = np.empty(len(ops))
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        model = OpLatencyModel.fit([ops[i] for i in train], y[train])
        errors[test] = [model.predict(ops[i]) / y[i] - 1 for i in test]
    return errors


def measure_and_model(space, input_size: tuple[int, int], precision: str, out_dir: str | Path,
                      archs: int = 30, seed: int = 0, threads: int = 1,
                      progress: bool = True) -> ModelledLatency:
    """Time the op instances of ``archs`` sampled architectures with ONNX Runtime (kept in
    ``out_dir/latency_ort_PRECISION.csv``, so a rerun measures nothing new), fit the op latency
    model on them (``out_dir/latency_model_PRECISION.json``) and return the filled-in source."""
    from donna_nas.latency.ort import OrtMeasurer
    from donna_nas.latency.table import LookupTable
    from donna_nas.space.ops import unique_ops

    out_dir = Path(out_dir)
    cache = out_dir / f"latency_ort_{precision}.csv"
    table = LookupTable.from_csv(cache) if cache.exists() else None
    measurer = OrtMeasurer(precision=precision, threads=threads)
    ops = unique_ops(space, [space.sample(seed + i) for i in range(archs)], tuple(input_size))
    table = measurer.measure_ops(ops, table, cache, progress=progress)
    source = ModelledLatency(table)
    source.model.save(out_dir / f"latency_model_{precision}.json")
    return source
