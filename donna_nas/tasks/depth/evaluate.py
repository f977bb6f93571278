"""Evaluate a finished depth run on the Eigen test split and write metrics + report.

Predictions are Monodepth2's ``scaled_disp`` (disparity in [1/max_depth, 1/min_depth]) at the
training size; the Eigen protocol (resize to GT size, Garg crop, per-image median scaling, clamp,
per-image averaging) lives in ``donna_nas.tasks.depth.metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from donna_nas.errors import UserError
from donna_nas.runtime.io import write_json_atomic
from donna_nas.tasks.depth.geometry import disp_to_depth
from donna_nas.tasks.depth.run import load_config, load_model

__all__ = ["predict_disparities", "evaluate_model", "evaluate_run", "load_gt", "METRIC_NAMES"]

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def _test_dataset(data: str, size: tuple[int, int], split: str | None = None):
    from donna_nas.data.kitti import KittiRawDataset

    split = split or str(Path(data) / "splits" / "test_files.txt")
    if not Path(split).is_file():
        raise UserError(f"{split}: test split not found; pass --data with a splits/test_files.txt")
    return KittiRawDataset(data, split, size=size, frame_ids=(0,), train=False, semantics=False, stereo=False, seed=0)


@torch.no_grad()
def predict_disparities(net: torch.nn.Module, dataset, min_depth: float = 0.1, max_depth: float = 100.0,
                        batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Scaled disparities (N,h,w) float32 and the input images (N,h,w,3) uint8 (for the report)."""
    from torch.utils.data import DataLoader

    net.eval()
    disps, images = [], []
    for b in DataLoader(dataset, batch_size=batch, shuffle=False):
        x = b["images"][:, 0]
        d, _ = disp_to_depth(net(x), min_depth, max_depth)
        disps.append(d[:, 0].numpy().astype(np.float32))
        images.append((x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
    return np.concatenate(disps), np.concatenate(images)


def load_gt(data: str, gt: str | None = None, split: str | None = None) -> list[np.ndarray]:
    """Eigen ground truth: ``gt`` file, else DATA/gt/test/gt_depths.npz (exported on first use)."""
    from donna_nas.data.gt import export_gt, load_gt_depths

    if gt:
        return load_gt_depths(gt)[0]
    split = split or str(Path(data) / "splits" / "test_files.txt")
    path = Path(data) / "gt" / Path(split).stem.replace("_files", "") / "gt_depths.npz"
    if not path.is_file():
        export_gt(data, split, out=path, progress=False)
    return load_gt_depths(path)[0]


def beats(metrics: dict[str, float], baseline: dict[str, float]) -> bool:
    """The one rule for "a model beats a baseline": both its abs_rel and its Sq Rel are lower. Two
    metrics, because a network can trade one for the other (a blurry map lowers Sq Rel alone)."""
    return bool(metrics["abs_rel"] < baseline["abs_rel"] and metrics["sq_rel"] < baseline["sq_rel"])


def load_or_make_prior(data: str, prior: str | None = None, train_split: str | None = None) -> np.ndarray | None:
    """The per-pixel prior: ``prior`` file, else DATA/gt/train_prior.npy (made from the training
    split's ground truth on first use); None when the data root has no training split."""
    from donna_nas.tasks.depth.baselines import load_prior, prior_from_split, save_prior

    if prior:
        return load_prior(prior)
    split = Path(train_split) if train_split else Path(data) / "splits" / "train_files.txt"
    if not split.is_file():
        return None
    path = Path(data) / "gt" / f"{split.stem.replace('_files', '')}_prior.npy"
    if path.is_file():
        return load_prior(path)
    p = prior_from_split(data, split)
    try:
        save_prior(path, p)
    except OSError:  # a read-only data root: use the prior without caching it
        pass
    return p


def evaluate_model(net: torch.nn.Module, info: dict[str, Any], data: str, gt: str | None = None,
                   split: str | None = None, prior: str | None = None, train_split: str | None = None,
                   ) -> tuple[dict[str, Any], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Eigen metrics of ``net`` on DATA's test split, with the constant and per-pixel-prior baselines.

    Returns (result, images, disparities, ground truth); writes nothing but DATA's cached ground
    truth and prior. ``info`` is the model's ``model.json`` (size and depth range).
    """
    from donna_nas.tasks.depth.baselines import baseline_metrics
    from donna_nas.tasks.depth.metrics import evaluate_disparities

    ds = _test_dataset(data, (info["height"], info["width"]), split)
    disps, images = predict_disparities(net, ds, info["min_depth"], info["max_depth"])
    gts = load_gt(data, gt, split)
    if len(gts) != len(disps):
        raise UserError(f"ground truth has {len(gts)} maps but the test split has {len(disps)} frames; re-export it for this split")
    metrics, ratios = evaluate_disparities(disps, gts, crop="garg", median_scaling=True)
    base = baseline_metrics(gts, load_or_make_prior(data, prior, train_split), crop="garg", median_scaling=True)
    out = {k: float(metrics[k]) for k in METRIC_NAMES}
    result = {
        "metrics": out,
        "constant_depth_baseline": {k: float(base["constant"][k]) for k in METRIC_NAMES},
        "baselines": {name: {k: float(m[k]) for k in METRIC_NAMES} for name, m in base.items()},
        "beats_baselines": {name: beats(out, m) for name, m in base.items()},
        "frames": int(len(disps)),
        "data": str(data),
        "median_scaling": _jsonable(ratios),
    }
    return result, images, disps, gts


def evaluate_run(run: str | Path, data: str | None = None, gt: str | None = None, report: bool = True,
                 split: str | None = None, prior: str | None = None) -> dict[str, float]:
    """Predict the test split with RUN's model; write RUN/metrics.json (and report.md + plots/).

    metrics.json holds the model's metrics and, evaluated the same way, the constant-depth and
    per-pixel-prior baselines (``baselines``), so every result states whether it beats them.
    """
    run = Path(run)
    cfg = load_config(run)
    net, info = load_model(run)
    data = data or cfg.data
    result, images, disps, gts = evaluate_model(net, info, data, gt, split, prior,
                                                cfg.train_split if data == cfg.data else None)
    write_json_atomic(run / "metrics.json", result)
    if report:
        from donna_nas.tasks.depth.report import write_report

        write_report(run, result, images, disps, gts, cfg, info)
    return result["metrics"]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size <= 16 else {"mean": float(x.mean()), "std": float(x.std())}
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
