"""Eigen-protocol metrics: perfect on GT, hand-computed values, Garg crop constants, scaling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from donna_nas.errors import UserError
from donna_nas.tasks.depth.metrics import (
    METRIC_NAMES, compute_depth_metrics, evaluate_disparities, garg_crop, resize_disparity,
)


def _gt(h=375, w=1242, seed=0, far=79.0):
    rng = np.random.default_rng(seed)
    gt = np.zeros((h, w), np.float32)
    m = rng.random((h, w)) < 0.2
    gt[m] = rng.uniform(2, far, m.sum())
    return gt


def test_ground_truth_against_itself_is_perfect():
    gts = [_gt(), _gt(370, 1224, 1)]
    disps = [np.where(g > 0, 1 / np.maximum(g, 1e-6), 1.0) for g in gts]
    m, r = evaluate_disparities(disps, gts)
    assert m["abs_rel"] == pytest.approx(0, abs=1e-6) and m["rmse"] == pytest.approx(0, abs=1e-4)
    assert m["a1"] == m["a2"] == m["a3"] == 1.0
    assert r["median"] == pytest.approx(1.0) and r["std"] == pytest.approx(0, abs=1e-6)


def test_hand_computed_example():
    m = compute_depth_metrics(np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 2.0]))
    assert m["abs_rel"] == pytest.approx((1 / 1 + 0 + 2 / 4) / 3)
    assert m["sq_rel"] == pytest.approx((1 / 1 + 0 + 4 / 4) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["rmse_log"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert m["a1"] == m["a2"] == m["a3"] == pytest.approx(1 / 3)  # ratios 2, 1, 2; 2 > 1.25^3
    assert tuple(m) == METRIC_NAMES


@pytest.mark.parametrize("h,w,expected", [
    (375, 1242, (153, 371, 44, 1197)), (376, 1241, (153, 372, 44, 1196)), (374, 1238, (152, 370, 44, 1193)),
    (370, 1224, (151, 366, 43, 1180)), (370, 1226, (151, 366, 44, 1181)),
])
def test_garg_crop_matches_published_definition(h, w, expected):
    assert garg_crop(h, w) == expected


def test_median_scaling_removes_global_scale_and_reports_ratios():
    gts = [_gt(seed=2, far=39.0), _gt(seed=3, far=39.0)]  # 2 x depth stays below the 80 m clamp
    disps = [np.where(g > 0, 0.5 / np.maximum(g, 1e-6), 1.0) for g in gts]  # depth = 2 x gt
    m, r = evaluate_disparities(disps, gts)
    assert m["abs_rel"] == pytest.approx(0, abs=1e-6)
    assert r["median"] == pytest.approx(0.5) and np.allclose(r["ratios"], 0.5)
    m2, r2 = evaluate_disparities(disps, gts, median_scaling=False)
    assert m2["abs_rel"] == pytest.approx(1.0, rel=1e-3) and r2["median"] is None


def test_mask_crop_clamp_and_per_image_averaging():
    gt1 = np.full((10, 10), 10.0, np.float32)
    gt1[0, 0] = 90.0  # beyond max depth: kept without a crop (Monodepth2 keeps every gt > 0 there)
    gt2 = np.full((4, 4), 5.0, np.float32)
    d1 = np.full((10, 10), 1 / 20.0, np.float32)  # depth 20 vs gt 10: abs_rel 1
    d2 = np.full((4, 4), 1 / 5.0, np.float32)  # exact: abs_rel 0
    m, _ = evaluate_disparities([d1, d2], [gt1, gt2], crop=None, median_scaling=False)
    img1 = (99 * 1.0 + 70 / 90) / 100
    assert m["abs_rel"] == pytest.approx(img1 / 2)  # mean of per-image values, not pooled
    m, _ = evaluate_disparities([np.full((10, 10), 1e-4, np.float32)], [gt1], crop=None, median_scaling=False)
    assert m["rmse"] == pytest.approx(np.sqrt((99 * 70**2 + 10**2) / 100))  # 10000 m clamped to 80


def test_resize_is_bilinear_half_pixel_and_errors_are_user_errors():
    d = np.array([[1.0, 3.0]], np.float32)
    out = resize_disparity(d, 1, 4)
    assert np.allclose(out, [[1.0, 1.5, 2.5, 3.0]])  # align_corners=False
    with pytest.raises(UserError, match="predictions"):
        evaluate_disparities([d], [])
    with pytest.raises(UserError, match="> 0"):
        evaluate_disparities([np.zeros((4, 4), np.float32)], [np.full((4, 4), 5.0, np.float32)], crop=None)


def test_evaluate_cli_on_saved_predictions(tmp_path, capsys):
    import json
    import zipfile

    from donna_nas.cli import main

    rows, cols = np.meshgrid(np.arange(96), np.arange(320), indexing="ij")
    smooth = (5 + 30 * rows / 96 + 5 * cols / 320).astype(np.float32)
    gts = np.stack([smooth, smooth[::-1].copy()])
    gt_path = tmp_path / "gt_depths.npz"
    np.savez_compressed(gt_path, data=gts, crop=np.array("garg"))
    disps = (0.25 / gts).astype(np.float32)[:, ::2, ::2]  # depth 4 x gt, predicted at half size
    np.save(tmp_path / "disps.npy", disps)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--pred", str(tmp_path / "disps.npy"), "--gt", str(gt_path), "--out", str(tmp_path / "m.json")])
    assert exc.value.code == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["images"] == 2 and m["crop"] == "garg" and m["ratio_median"] == pytest.approx(0.25, rel=0.05)
    assert 0 <= m["metrics"]["abs_rel"] < 0.02 and m["metrics"]["a1"] == 1.0
    np.save(tmp_path / "bad.npy", disps[:1])
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--pred", str(tmp_path / "bad.npy"), "--gt", str(gt_path)])
    assert exc.value.code == 2 and "1 predictions but 2" in capsys.readouterr().err
    assert zipfile.is_zipfile(gt_path)
