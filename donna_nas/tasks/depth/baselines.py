"""Reference predictors that look at no image: the bars a depth network must clear.

* **constant depth**: the same depth everywhere. After per-image median scaling it predicts the
  image's median depth at every pixel; a network that does not beat it has learned nothing.
* **per-pixel prior**: at each pixel, the mean training depth there (from the training split's
  velodyne ground truth), median-scaled per image like any monocular prediction. It knows the
  street's layout (near road at the bottom, far centre, facades at the sides) and nothing else, so a
  network must beat it before it can be said to have learned depth *from the image*.

Both are given as disparities (1 / depth) so they go through exactly the evaluation of a model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from donna_nas.errors import UserError

__all__ = ["pixel_prior", "prior_from_split", "load_prior", "save_prior", "baseline_disparities", "baseline_metrics"]


def pixel_prior(depths: list[np.ndarray] | np.ndarray, min_depth: float = 1e-3, max_depth: float = 80.0) -> np.ndarray:
    """Mean valid depth at every pixel of equally sized (sparse) depth maps; 0 = invalid.

    Pixels that no map covers take the mean of their row's covered pixels, rows with none the
    nearest covered row's value, so the prior is defined (and positive) everywhere.
    """
    stack = np.asarray(depths, np.float64)
    if stack.ndim != 3 or len(stack) == 0:
        raise UserError(f"the per-pixel prior needs N >= 1 depth maps of shape (N, H, W) (got {stack.shape})")
    valid = (stack > min_depth) & (stack < max_depth)
    count = valid.sum(0)
    total = np.where(valid, stack, 0).sum(0)
    if not count.any():
        raise UserError("the per-pixel prior: no valid ground-truth depth in any training map")
    prior = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    row_mean = np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in prior])
    rows = np.flatnonzero(np.isfinite(row_mean))
    row_mean = np.interp(np.arange(len(row_mean)), rows, row_mean[rows])
    prior = np.where(np.isfinite(prior), prior, row_mean[:, None])
    return prior.astype(np.float32)


def prior_from_split(data: str | os.PathLike, split: str | os.PathLike | None = None) -> np.ndarray:
    """The per-pixel prior of a data root from its training split's velodyne ground truth."""
    from donna_nas.data.gt import gt_for_entry, resolve_protocol
    from donna_nas.data.kitti import read_split

    root = Path(data)
    split = split or root / "splits" / "train_files.txt"
    if not Path(split).is_file():
        raise UserError(f"{split}: training split not found; the per-pixel prior needs the training split "
                        f"(or pass --prior FILE.npy)")
    entries = read_split(str(split), root)
    proto = resolve_protocol(root, "auto")
    cache: dict = {}
    maps = [gt_for_entry(root, e, proto, cache) for e in entries]
    if len({m.shape for m in maps}) != 1:  # real KITTI sizes differ slightly: crop to the smallest
        h, w = min(m.shape[0] for m in maps), min(m.shape[1] for m in maps)
        maps = [m[:h, :w] for m in maps]
    return pixel_prior(maps)


def save_prior(path: str | os.PathLike, prior: np.ndarray) -> None:
    from donna_nas.runtime.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(prior, np.float32), allow_pickle=False)


def load_prior(path: str | os.PathLike) -> np.ndarray:
    try:
        prior = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"--prior {path}: not a readable .npy depth map ({exc})") from exc
    if prior.ndim != 2 or not np.all(np.isfinite(prior)) or np.any(prior <= 0):
        raise UserError(f"--prior {path}: expected a positive, finite (H, W) depth map (got shape {prior.shape})")
    return prior.astype(np.float32)


def baseline_disparities(n: int, shape: tuple[int, int], prior: np.ndarray | None) -> dict[str, np.ndarray]:
    """(N, h, w) disparities of the constant and (when given) the prior predictor."""
    out = {"constant": np.ones((n,) + tuple(shape), np.float32)}
    if prior is not None:
        out["prior"] = np.broadcast_to((1.0 / prior).astype(np.float32), (n,) + prior.shape).copy()
    return out


def baseline_metrics(gts: list[np.ndarray], prior: np.ndarray | None, **eval_kw) -> dict[str, dict[str, float]]:
    """Eigen metrics of the constant and prior predictors on ``gts`` (same protocol as a model)."""
    from donna_nas.tasks.depth.metrics import evaluate_disparities

    shape = np.asarray(gts[0]).shape
    out = {}
    for name, disps in baseline_disparities(len(gts), shape if prior is None else prior.shape, prior).items():
        out[name], _ = evaluate_disparities(disps, gts, **eval_kw)
    return out
