"""Predictor models: ridge regression (DONNA's linear model) and a gradient-boosting alternative.

Ridge is closed form: w = (XcᵀXc + αI)⁻¹ Xcᵀyc on centred data, intercept ȳ − x̄ᵀw; α is picked by
exact leave-one-out error (hat-matrix shortcut), so no data is spent on a validation split. Models
serialise to JSON (never pickle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from donna_nas.errors import UserError

__all__ = ["Ridge", "GradientBoosting", "ALPHAS"]

ALPHAS = tuple(float(a) for a in np.logspace(-6, 3, 19))


def _ridge_solve(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mu, ym = X.mean(0), y.mean()
    Xc, yc = X - mu, y - ym
    A = Xc.T @ Xc + alpha * np.eye(X.shape[1])
    w = np.linalg.solve(A, Xc.T @ yc)
    return w, float(ym - mu @ w)


def _loo_mse(X: np.ndarray, y: np.ndarray, alpha: float) -> float:
    """Exact leave-one-out MSE of ridge with an unpenalised intercept."""
    n = X.shape[0]
    Z = np.hstack([np.ones((n, 1)), X])
    P = np.eye(Z.shape[1]) * alpha
    P[0, 0] = 0.0
    H = Z @ np.linalg.solve(Z.T @ Z + P + 1e-12 * np.eye(Z.shape[1]), Z.T)
    r = (y - H @ y) / np.clip(1.0 - np.diag(H), 1e-9, None)
    return float(np.mean(r ** 2))


@dataclass
class Ridge:
    """Linear model ``y ≈ intercept + X @ coef``; ``alpha=None`` chooses α by leave-one-out."""

    alpha: float | None = None
    alphas: tuple[float, ...] = ALPHAS
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: float = 0.0
    feature_names: list[str] = field(default_factory=list)
    kind: str = "ridge"

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Ridge":
        X, y = np.asarray(X, float), np.asarray(y, float)
        if X.shape[0] < 2:
            raise UserError(f"a predictor needs at least 2 training architectures, got {X.shape[0]}")
        alpha = self.alpha
        if alpha is None:
            alpha = min(self.alphas, key=lambda a: _loo_mse(X, y, a)) if X.shape[0] > 2 else 1.0
        self.coef, self.intercept = _ridge_solve(X, y, alpha)
        self.chosen_alpha = float(alpha)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, float) @ self.coef + self.intercept

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "alpha": getattr(self, "chosen_alpha", self.alpha),
                "coef": [float(c) for c in self.coef], "intercept": float(self.intercept),
                "features": list(self.feature_names)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Ridge":
        m = cls(alpha=obj.get("alpha"), coef=np.array(obj["coef"], float),
                intercept=float(obj["intercept"]), feature_names=list(obj.get("features", [])),
                kind=obj.get("kind", "ridge"))
        m.chosen_alpha = obj.get("alpha")
        return m


@dataclass
class GradientBoosting:
    """sklearn gradient-boosted trees (an alternative; not additive, so not for the exact solver)."""

    seed: int = 0
    kind: str = "gbm"

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GradientBoosting":
        from sklearn.ensemble import GradientBoostingRegressor

        self.model = GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.05,
                                               subsample=1.0, random_state=self.seed)
        self.model.fit(np.asarray(X, float), np.asarray(y, float))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X, float))
