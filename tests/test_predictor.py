"""Predictor: ridge recovers known coefficients, JSON round trips, Kendall τ, feature encodings."""

import json

import numpy as np
import pytest

from donna_nas.errors import UserError
from donna_nas.predictor.features import nsr_features, onehot_columns, onehot_features
from donna_nas.predictor.fit import compare_models, cv_predict, kendall_tau, to_linear_block_json
from donna_nas.predictor.models import GradientBoosting, Ridge
from donna_nas.search.objectives import LinearBlockPredictor
from donna_nas.space import load_space

SPACE = load_space("tiny")


def _lookup(seed=0):
    rng = np.random.default_rng(seed)
    return {b.name: {c.token(): float(rng.uniform(0.2, 1.0)) for c in b.all_choices()} for b in SPACE.blocks}


def test_ridge_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 5))
    w, b = np.array([0.5, -1.0, 2.0, 0.0, 0.25]), 0.3
    m = Ridge(alpha=1e-9).fit(X, X @ w + b)
    np.testing.assert_allclose(m.coef, w, atol=1e-6)
    assert m.intercept == pytest.approx(b, abs=1e-6)
    # with leave-one-out α selection and small noise, still close
    m2 = Ridge().fit(X, X @ w + b + rng.normal(0, 1e-3, 40))
    np.testing.assert_allclose(m2.coef, w, atol=0.02)


def test_ridge_json_round_trip_predicts_the_same():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    m = Ridge(feature_names=["a", "b", "c"]).fit(X, y)
    m2 = Ridge.from_json(json.loads(json.dumps(m.to_json())))
    np.testing.assert_allclose(m2.predict(X), m.predict(X))
    assert m2.feature_names == ["a", "b", "c"]


def test_linear_block_export_equals_ridge_on_nsr_features(tmp_path):
    lookup = _lookup()
    archs = [SPACE.sample(s) for s in range(15)]
    X = nsr_features(archs, lookup, SPACE)
    y = X @ np.array([1.0, 2.0, -0.5, 0.3, 1.5]) + 0.1
    m = Ridge().fit(X, y)
    obj = to_linear_block_json(m, SPACE, lookup, "sq_rel")
    path = tmp_path / "predictor.json"
    path.write_text(json.dumps(obj))
    pred = LinearBlockPredictor.from_json(path)
    for a, x in zip(archs, X):
        assert pred.predict(SPACE, a) == pytest.approx(float(m.predict(x[None])[0]), rel=1e-9)


def test_kendall_tau_and_loo_cv():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(10, 2))
    y = X @ np.array([1.0, -2.0])
    oof = cv_predict(lambda: Ridge(alpha=1e-9), X, y)  # noise-free linear: LOO is exact
    np.testing.assert_allclose(oof, y, atol=1e-6)


def test_onehot_features_mark_one_value_per_option():
    archs = [SPACE.sample(s) for s in range(5)]
    X = onehot_features(archs, SPACE)
    cols = onehot_columns(SPACE)
    assert X.shape == (5, len(cols))
    varying = sum(1 for b in SPACE.blocks for v in b.options().values() if len(v) > 1)
    assert (X.sum(1) == varying).all()


def test_compare_models_ranks_a_clean_signal():
    lookup = _lookup(3)
    archs = [SPACE.sample(s) for s in range(30)]
    y = nsr_features(archs, lookup, SPACE) @ np.array([1.0, 1.0, 2.0, 1.0, 3.0])
    rows, preds = compare_models(archs[:20], y[:20], archs[20:], y[20:], SPACE, lookup)
    r = {row["model"]: row for row in rows}
    assert r["ridge_nsr"]["cv_tau"] > 0.95 and r["ridge_nsr"]["test_tau"] > 0.95
    assert set(r) == {"ridge_nsr", "ridge_onehot", "gbm_nsr", "sum_nsr (DNA, unfitted)",
                      "macs (bigger is better, unfitted)"}


def test_the_size_baseline_ranks_a_target_that_falls_with_macs():
    """The unfitted "bigger is better" row: tau 1 for an error that falls with the MACs, -1 for one
    that rises, whatever the NSRs say."""
    lookup = _lookup(3)
    archs = [SPACE.sample(s) for s in range(30)]
    macs = np.array([float(SPACE.macs(a)) for a in archs])
    for sign in (-1.0, 1.0):
        rows, preds = compare_models(archs[:20], sign * macs[:20], archs[20:], sign * macs[20:], SPACE, lookup)
        r = {row["model"]: row for row in rows}["macs (bigger is better, unfitted)"]
        assert r["cv_tau"] == pytest.approx(-sign) and r["test_tau"] == pytest.approx(-sign)
        assert np.array_equal(preds["macs"], -macs[20:])


def test_too_few_points():
    with pytest.raises(UserError, match="at least 2"):
        Ridge().fit(np.zeros((1, 2)), np.zeros(1))
    GradientBoosting().fit(np.eye(3), np.arange(3.0))  # the alternative model fits tiny data
