"""Predictor features of an architecture: its blocks' NSRs (DONNA) or a one-hot of its choices."""

from __future__ import annotations

import numpy as np

from donna_nas.space.space import Architecture, SearchSpace

__all__ = ["nsr_features", "onehot_features", "onehot_columns", "feature_names"]


def feature_names(space: SearchSpace) -> list[str]:
    return [f"nsr_{b.name}" for b in space.blocks]


def nsr_features(archs: list[Architecture], lookup: dict[str, dict[str, float]],
                 space: SearchSpace) -> np.ndarray:
    """(n, blocks): column i is the held-out NSR of the choice the architecture makes in block i."""
    return np.array([[lookup[n][c.token()] for n, c in zip(space.block_names, a.block_choices)]
                     for a in archs], dtype=np.float64)


def onehot_columns(space: SearchSpace) -> list[tuple[str, str]]:
    """(block, option=value) columns: one indicator per option value per block (not per token:
    ~2,600 tokens a block would leave 20–30 training points hopelessly under-determined)."""
    cols = []
    for b in space.blocks:
        for key, values in b.options().items():
            if len(values) > 1:
                cols += [(b.name, f"{key}={_fmt(v)}") for v in values]
    return cols


def onehot_features(archs: list[Architecture], space: SearchSpace) -> np.ndarray:
    cols = {c: j for j, c in enumerate(onehot_columns(space))}
    X = np.zeros((len(archs), len(cols)))
    for r, a in enumerate(archs):
        for n, c in zip(space.block_names, a.block_choices):
            for key in ("op", "kernel", "expand", "depth", "out_channels", "se", "act"):
                j = cols.get((n, f"{key}={_fmt(getattr(c, key))}"))
                if j is not None:
                    X[r, j] = 1.0
    return X


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
