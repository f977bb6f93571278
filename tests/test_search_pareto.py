"""Dominance, fronts and the exact 2-D hypervolume against brute force and hand computations."""

import numpy as np
import pytest

from donna_nas.search.pareto import (
    dominates,
    hypervolume_2d,
    non_dominated_mask,
    pareto_front,
    reference_point,
)


def brute_mask(p):
    return np.array([not any(dominates(q, x) for q in p) for x in p])


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_matches_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 5, size=(60, k)).astype(float)  # many ties and duplicates
    expect = brute_mask(p)
    assert (non_dominated_mask(p) == expect).all()
    uniq = non_dominated_mask(p, unique=True)
    assert uniq.sum() == len({tuple(r) for r in p[expect]})
    assert not (uniq & ~expect).any()


def test_pareto_front_sorted_by_first_column():
    p = np.array([[3, 1], [1, 3], [2, 2], [2, 3], [1, 3]], float)
    idx = pareto_front(p)
    assert p[idx].tolist() == [[1, 3], [2, 2], [3, 1]]


def test_hypervolume_hand_computed():
    # staircase (1,3),(2,2),(3,1) under ref (4,4): 3*1 + 2*1 + 1*1 = 6
    assert hypervolume_2d([[1, 3], [2, 2], [3, 1]], [4, 4]) == pytest.approx(6.0)
    # dominated and out-of-reference points add nothing
    assert hypervolume_2d([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)
    assert hypervolume_2d([[5, 5]], [4, 4]) == 0.0


def test_hypervolume_matches_grid_count():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 20, size=(15, 2))
    ref = (20, 20)
    grid = np.zeros((20, 20), bool)  # unit cells [x,x+1)x[y,y+1) dominated by some point
    for x, y in p:
        grid[x:, y:] = True
    assert hypervolume_2d(p, ref) == pytest.approx(grid.sum())


def test_reference_point_beyond_nadir_for_negative_columns():
    f = np.array([[-0.8, 10.0], [-0.5, 20.0]])
    ref = reference_point(f)
    assert ref[0] == pytest.approx(-0.5 + 0.05) and ref[1] == pytest.approx(22.0)
    assert (ref > f.max(axis=0)).all()
