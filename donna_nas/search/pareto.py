"""Dominance, Pareto fronts and the exact 2-D hypervolume.

Every function minimises every column: callers negate a maximised metric first. Points are
``(n, k)`` float arrays; a point dominates another when it is no worse in every column and
strictly better in one. Identical points do not dominate each other, so a front keeps one
representative of each distinct objective vector only where a caller asks for it (``unique``).
"""

from __future__ import annotations

import bisect

import numpy as np


def dominates(a, b) -> bool:
    """True when ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_mask(points, unique: bool = False) -> np.ndarray:
    """Boolean mask of the points no other point dominates.

    With ``unique=True`` only the first of several identical non-dominated points is kept.
    2-D uses a sort (O(n log n)); 3-D a sweep over a staircase; more columns a blockwise
    pairwise check (fine for the few thousand points a search produces).
    """
    p = np.asarray(points, dtype=float)
    n = len(p)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if p.ndim != 2:
        raise ValueError("points must be an (n, k) array")
    k = p.shape[1]
    if k == 1:
        mask = p[:, 0] == p[:, 0].min()
        return _first_of_equal(p, mask) if unique else mask
    if k == 2:
        return _nd_2d(p, unique)
    if k == 3:
        return _nd_3d(p, unique)
    mask = np.ones(n, dtype=bool)
    for start in range(0, n, 512):
        chunk = p[start:start + 512]
        le = np.all(p[None, :, :] <= chunk[:, None, :], axis=2)
        lt = np.any(p[None, :, :] < chunk[:, None, :], axis=2)
        mask[start:start + 512] = ~np.any(le & lt, axis=1)
    return _first_of_equal(p, mask) if unique else mask


def _first_of_equal(p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros(len(p), dtype=bool)
    seen = set()
    for i in np.flatnonzero(mask):
        key = tuple(p[i])
        if key not in seen:
            seen.add(key)
            out[i] = True
    return out


def _nd_2d(p: np.ndarray, unique: bool) -> np.ndarray:
    order = np.lexsort((p[:, 1], p[:, 0]))  # by column 0, ties by column 1
    y = p[order, 1]
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], y[:-1])))
    mask = np.zeros(len(p), dtype=bool)
    mask[order[y < best_before]] = True
    return mask if unique else _with_duplicates(p, mask)


def _with_duplicates(p: np.ndarray, unique_mask: np.ndarray) -> np.ndarray:
    """Extend a one-per-vector mask to every copy of a kept vector."""
    kept = {tuple(r) for r in p[unique_mask]}
    return np.fromiter((tuple(r) in kept for r in p), dtype=bool, count=len(p))


def _nd_3d(p: np.ndarray, unique: bool) -> np.ndarray:
    """Sweep in lexicographic order; the kept points' (col1, col2) staircase answers
    "is there an earlier point no worse in columns 1 and 2" in O(log n)."""
    order = np.lexsort((p[:, 2], p[:, 1], p[:, 0]))
    stair_y: list[float] = []  # increasing col1
    stair_z: list[float] = []  # strictly decreasing col2
    mask = np.zeros(len(p), dtype=bool)
    for idx in order:
        _, y, z = p[idx]
        j = bisect.bisect_right(stair_y, y) - 1
        if j >= 0 and stair_z[j] <= z:
            continue  # dominated by (or equal to) an earlier point
        mask[idx] = True
        # insert (y, z); drop staircase entries it dominates (col1 >= y, col2 >= z)
        pos = j + 1
        end = pos
        while end < len(stair_y) and stair_z[end] >= z:
            end += 1
        stair_y[pos:end] = [y]
        stair_z[pos:end] = [z]
    return mask if unique else _with_duplicates(p, mask)


def pareto_front(points, unique: bool = True) -> np.ndarray:
    """Indices of the non-dominated points, sorted by the first column."""
    p = np.asarray(points, dtype=float)
    idx = np.flatnonzero(non_dominated_mask(p, unique=unique))
    if len(idx) == 0:
        return idx
    return idx[np.lexsort(tuple(p[idx, c] for c in reversed(range(p.shape[1]))))]


def hypervolume_2d(points, ref) -> float:
    """Area dominated by ``points`` and bounded by the reference point ``ref`` (both minimised).

    Points not strictly better than ``ref`` in both columns add nothing. Exact: the sum of the
    rectangles of the front's staircase.
    """
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    rx, ry = float(ref[0]), float(ref[1])
    p = p[(p[:, 0] < rx) & (p[:, 1] < ry)]
    if len(p) == 0:
        return 0.0
    p = p[pareto_front(p)]
    area, prev_y = 0.0, ry
    for x, y in p:  # x increasing, y decreasing
        area += (rx - x) * (prev_y - y)
        prev_y = y
    return float(area)


def reference_point(front, scale: float = 1.1) -> np.ndarray:
    """Hypervolume reference: the front's nadir (worst value of each column) times ``scale``.

    For a column whose nadir is <= 0 (a negated accuracy), the margin is added instead
    (nadir + (scale - 1) * |nadir|, or + (scale - 1) when it is 0), so the reference always lies
    beyond the front.
    """
    f = np.asarray(front, dtype=float)
    nadir = f.max(axis=0)
    margin = (scale - 1.0) * np.where(nadir == 0, 1.0, np.abs(nadir))
    return nadir + margin
