"""Depth evaluation with the Eigen protocol (as used by Monodepth2 and its successors).

Per image: the predicted disparity is resized bilinearly to the ground-truth size
(``torch.nn.functional.interpolate``, ``align_corners=False``, i.e. the half-pixel convention of
OpenCV's ``resize``), depth = 1 / disparity; valid pixels are ``min_depth < gt < max_depth`` inside the
Garg crop (without a crop, e.g. for the annotated ``eigen_benchmark`` maps, every pixel with gt > 0, as
Monodepth2 does); the prediction is multiplied by ``median(gt) / median(pred)`` (monocular models have no
scale), clamped to ``[min_depth, max_depth]``, and the seven errors are computed. The table is the
mean over images of the per-image metrics.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from donna_nas.errors import UserError

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
#: Garg et al. crop as fractions of (height, height, width, width); truncated toward zero
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def garg_crop(h: int, w: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), end-exclusive; 375x1242 -> (153, 371, 44, 1197)."""
    c = np.array([GARG_CROP[0] * h, GARG_CROP[1] * h, GARG_CROP[2] * w, GARG_CROP[3] * w]).astype(np.int32)
    return int(c[0]), int(c[1]), int(c[2]), int(c[3])


def garg_crop_mask(h: int, w: int) -> np.ndarray:
    top, bottom, left, right = garg_crop(h, w)
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


def compute_depth_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The seven errors over matching 1-D arrays of valid ground-truth and predicted depths (metres)."""
    gt = np.asarray(gt, np.float64).ravel()
    pred = np.asarray(pred, np.float64).ravel()
    thresh = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff**2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


def resize_disparity(disp: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize (align_corners=False) of one (h0, w0) disparity map to (h, w)."""
    disp = np.asarray(disp, np.float32)
    if disp.shape == (h, w):
        return disp
    t = torch.from_numpy(np.ascontiguousarray(disp))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def evaluate_disparities(pred_disps: np.ndarray | Sequence[np.ndarray], gt_depths: Sequence[np.ndarray],
                         crop: str | None = "garg", median_scaling: bool = True, min_depth: float = 1e-3,
                         max_depth: float = 80.0, scale_factor: float = 1.0) -> tuple[dict[str, float], dict]:
    """Eigen-protocol metrics of predicted disparities ``(N, h, w)`` against N ground-truth depth maps.

    Returns (metrics averaged over images, ratio info ``{"median", "std", "ratios"}``; ``std`` is the
    standard deviation of ratios / median, as monodepth2 prints it). ``scale_factor`` multiplies the
    predicted depth before median scaling (e.g. 5.4 for stereo-trained models without median scaling).
    """
    if crop not in ("garg", None, "none"):
        raise UserError(f"crop must be 'garg' or none (got '{crop}')")
    if len(pred_disps) != len(gt_depths):
        raise UserError(f"{len(pred_disps)} predictions but {len(gt_depths)} ground-truth maps; "
                        f"predict on the same split, in the same order")
    per_image, ratios = [], []
    for i, (disp, gt) in enumerate(zip(pred_disps, gt_depths)):
        gt = np.asarray(gt, np.float32)
        if gt.ndim != 2 or np.asarray(disp).ndim != 2:
            raise UserError(f"image {i}: prediction and ground truth must be 2-D maps "
                            f"(got {np.asarray(disp).shape} and {gt.shape})")
        h, w = gt.shape
        d = resize_disparity(disp, h, w)
        if crop == "garg":  # Eigen: depth range and Garg crop
            mask = (gt > min_depth) & (gt < max_depth) & garg_crop_mask(h, w)
        else:  # no crop (e.g. the annotated eigen_benchmark maps): every pixel with ground truth, as Monodepth2 does
            mask = gt > 0
        if not mask.any():
            raise UserError(f"image {i}: no valid ground-truth pixel inside the crop and depth range")
        dv = d[mask].astype(np.float64)
        if not np.all(np.isfinite(dv)) or np.any(dv <= 0):
            raise UserError(f"image {i}: predicted disparities must be finite and > 0 on valid pixels")
        p = scale_factor / dv
        g = gt[mask].astype(np.float64)
        if median_scaling:
            r = np.median(g) / np.median(p)
            ratios.append(r)
            p = p * r
        p = np.clip(p, min_depth, max_depth)
        per_image.append(compute_depth_metrics(g, p))
    metrics = {k: float(np.mean([m[k] for m in per_image])) for k in METRIC_NAMES}
    if ratios:
        arr = np.array(ratios)
        med = float(np.median(arr))
        info = {"median": med, "std": float(np.std(arr / med)), "ratios": arr}
    else:
        info = {"median": None, "std": None, "ratios": np.array([])}
    return metrics, info
