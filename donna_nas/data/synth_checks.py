"""Self-consistency checks of the synthetic world (used by the tests and experiments/bench_synth.py).

- ``photometric_errors``: warping frame t+1 into frame t with the rendered depth and the true relative
  pose must reproduce frame t on static, co-visible pixels -- the signal self-supervised depth learns from.
- ``velodyne_agreement``: velodyne points projected with the written calibration must lie on the
  surfaces the camera renders (sub-pixel ray cast through each projected point).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from donna_nas.data.synth import DriveRenderer


def photometric_errors(r: DriveRenderer, f: int) -> dict[str, float]:
    """Mean |I_t - warp(I_t+1)| on static co-visible pixels (colours in [0, 1]), the same without warping,
    and the fraction of pixels used (moving vehicles, sky, out-of-view and occluded pixels excluded)."""
    a, b = r.render(f), r.render(f + 1)
    H, W = a.depth.shape
    K = r.cal["K"]
    T = np.linalg.inv(r.pose(f + 1, "cam2")) @ r.pose(f, "cam2")  # camera t -> camera t+1
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    d = np.where(np.isfinite(a.depth), a.depth, 1.0)
    X = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], -1)
    Y = X @ T[:3, :3].T + T[:3, 3]
    pu = K[0, 0] * Y[..., 0] / Y[..., 2] + K[0, 2]
    pv = K[1, 1] * Y[..., 1] / Y[..., 2] + K[1, 2]
    grid = torch.from_numpy(np.stack([pu / (W - 1) * 2 - 1, pv / (H - 1) * 2 - 1], -1)[None]).float()
    img = torch.from_numpy(b.rgb).permute(2, 0, 1)[None].float() / 255
    warped = F.grid_sample(img, grid, align_corners=True)[0].permute(1, 2, 0).numpy()
    depth_b = torch.from_numpy(np.minimum(b.depth, 1e4))[None, None]
    seen = F.grid_sample(depth_b, grid, mode="nearest", align_corners=True)[0, 0].numpy()
    moving = np.isin(a.obj, np.nonzero(r.scene.vel)[0])
    inside = (pu >= 0) & (pu <= W - 1) & (pv >= 0) & (pv <= H - 1) & (Y[..., 2] > 0)
    visible = np.abs(seen - Y[..., 2]) < 0.02 * Y[..., 2]
    ok = np.isfinite(a.depth) & ~moving & inside & visible
    err = np.abs(warped - a.rgb / 255.0).mean(-1)
    ident = np.abs(b.rgb / 255.0 - a.rgb / 255.0).mean(-1)
    return {"warp_error": float(err[ok].mean()), "warp_error_median": float(np.median(err[ok])),
            "identity_error": float(ident[ok].mean()), "pixels_used": float(ok.mean())}


def velodyne_agreement(r: DriveRenderer, f: int) -> dict[str, float]:
    """Relative difference between each projected velodyne point's camera z and the rendered depth on
    the camera ray through its exact (sub-pixel) projection. Occluded = the camera sees >1% nearer."""
    P = r.cal["P2"] @ r.cal["R_rect"] @ r.cal["velo_to_cam"]
    pts = r.velodyne(f)
    hom = np.c_[pts[:, :3], np.ones(len(pts))] @ P.T
    z = hom[:, 2]
    u, v = hom[:, 0] / z, hom[:, 1] / z
    H, W = r.grid.H, r.grid.W
    m = (z > 0) & (u >= 0) & (v >= 0) & (u <= W - 1) & (v <= H - 1)
    seen = r.depth_at(f, u[m], v[m])
    rel = (z[m] - seen) / z[m]
    occluded = rel > 0.01
    return {"points": int(m.sum()), "occluded": float(occluded.mean()), "min_rel": float(rel.min()),
            "median_abs_rel": float(np.median(np.abs(rel[~occluded]))),
            "max_abs_rel": float(np.abs(rel[~occluded]).max())}
