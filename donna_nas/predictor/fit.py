"""Fit and judge accuracy predictors; export ridge-on-NSR as the search's additive predictor.

Ranking quality is what a search needs, so models are compared by Kendall τ between predicted
and measured metric: out-of-fold on the training architectures (leave-one-out when ``folds`` ≥ n)
and on held-out architectures never used to fit.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from donna_nas.predictor.features import nsr_features, onehot_columns, onehot_features
from donna_nas.predictor.models import GradientBoosting, Ridge
from donna_nas.space.space import Architecture, SearchSpace

__all__ = ["CONSTANT_SPREAD", "kendall_tau", "cv_predict", "compare_models", "predicts_constant",
           "to_linear_block_json"]

#: A predictor whose predictions over its training architectures spread less than this fraction of
#: the targets' spread is constant: it ranks nothing (``predictor.quality``).
CONSTANT_SPREAD = 1e-3


def kendall_tau(a, b) -> float:
    from scipy.stats import kendalltau

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b).statistic)


def predicts_constant(pred, y) -> bool:
    """Whether predictions ``pred`` of targets ``y`` are, in effect, one value (``CONSTANT_SPREAD``)."""
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    return bool(np.ptp(pred) <= CONSTANT_SPREAD * np.ptp(y)) if len(y) > 1 else False


def cv_predict(factory: Callable[[], Any], X: np.ndarray, y: np.ndarray, folds: int = 0,
               seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions; ``folds`` 0 or ≥ n means leave-one-out."""
    n = len(y)
    k = n if folds <= 0 or folds >= n else folds
    order = np.random.default_rng(seed).permutation(n) if k < n else np.arange(n)
    pred = np.zeros(n)
    for f in range(k):
        test = order[f::k]
        train = np.setdiff1d(np.arange(n), test)
        pred[test] = factory().fit(X[train], y[train]).predict(X[test])
    return pred


def compare_models(train: list[Architecture], y_train: np.ndarray, test: list[Architecture],
                   y_test: np.ndarray, space: SearchSpace, lookup: dict[str, dict[str, float]],
                   folds: int = 0, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Rows (model, cv_tau, test_tau, cv_rmse) for ridge-NSR, ridge-one-hot, GBM-NSR, and two
    unfitted baselines: DNA's sum of block NSRs, and "bigger is better" (minus the MACs), which a
    predictor must beat before its ranking says more than the network's size; plus every model's
    held-out predictions. Both baselines are oriented for a metric to minimise (low NSR, many MACs:
    low error); callers with a metric to maximise negate their taus."""
    Xn, Xn_t = nsr_features(train, lookup, space), nsr_features(test, lookup, space)
    Xo, Xo_t = onehot_features(train, space), onehot_features(test, space)
    y_train, y_test = np.asarray(y_train, float), np.asarray(y_test, float)
    specs = {
        "ridge_nsr": (lambda: Ridge(), Xn, Xn_t),
        "ridge_onehot": (lambda: Ridge(), Xo, Xo_t),
        "gbm_nsr": (lambda: GradientBoosting(seed=seed), Xn, Xn_t),
    }
    rows, preds = [], {}
    for name, (factory, X, Xt) in specs.items():
        oof = cv_predict(factory, X, y_train, folds, seed)
        model = factory().fit(X, y_train)
        pt = model.predict(Xt) if len(test) else np.zeros(0)
        preds[name] = pt
        rows.append({"model": name, "cv_tau": kendall_tau(oof, y_train),
                     "test_tau": kendall_tau(pt, y_test) if len(test) > 1 else math.nan,
                     "cv_rmse": float(np.sqrt(np.mean((oof - y_train) ** 2)))})
    dna = Xn_t.sum(1) if len(test) else np.zeros(0)
    preds["sum_nsr"] = dna
    rows.append({"model": "sum_nsr (DNA, unfitted)", "cv_tau": kendall_tau(Xn.sum(1), y_train),
                 "test_tau": kendall_tau(dna, y_test) if len(test) > 1 else math.nan,
                 "cv_rmse": math.nan})
    macs, macs_t = (-np.array([float(space.macs(a)) for a in archs]) for archs in (train, test))
    preds["macs"] = macs_t
    rows.append({"model": "macs (bigger is better, unfitted)", "cv_tau": kendall_tau(macs, y_train),
                 "test_tau": kendall_tau(macs_t, y_test) if len(test) > 1 else math.nan, "cv_rmse": math.nan})
    return rows, preds


def to_linear_block_json(model: Ridge, space: SearchSpace, lookup: dict[str, dict[str, float]],
                         metric: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``LinearBlockPredictor`` JSON: term(block i, token) = coef_i · NSR(i, token)."""
    terms = {b.name: {tok: float(model.coef[i] * v) for tok, v in sorted(lookup[b.name].items())}
             for i, b in enumerate(space.blocks)}
    obj = {"kind": "linear_block", "metric": metric, "direction": "minimize",
           "intercept": float(model.intercept), "terms": terms, "strict": True,
           "model": model.to_json(), "space": space.name, "space_fingerprint": space.fingerprint()}
    obj.update(extra or {})
    return obj


def onehot_linear_block_json(model: Ridge, space: SearchSpace, metric: str) -> dict[str, Any]:
    """The one-hot ridge as ``option=value`` terms (also additive)."""
    terms: dict[str, dict[str, float]] = {b.name: {} for b in space.blocks}
    for (block, key), c in zip(onehot_columns(space), model.coef):
        terms[block][key] = float(c)
    return {"kind": "linear_block", "metric": metric, "direction": "minimize",
            "intercept": float(model.intercept), "terms": terms, "strict": False}
