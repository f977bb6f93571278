"""How much can self-supervision learn from a world? Photometric signal at the true depth and pose.

Self-supervised depth (Monodepth2) only learns where the photometric error of a frame warped with
the *right* depth is clearly lower than with a wrong one. This module measures that directly on a
rendered world, before any network is trained: for target frames t it renders t−1, t, t+1, warps
both neighbours into t with the true depth × s (s ∈ {0.8, 1, 1.25}) and the true relative pose, and
computes Monodepth2's per-pixel error 0.85·(1−SSIM)/2 + 0.15·L1, minimum over the two sources.

Two figures summarise it, over the static, non-sky pixels inside the Garg crop:

* ``fraction``: pixels where the true depth beats both wrong scales *and* passes the auto-mask
  (the warped error is below the unwarped identity error) — the pixels that can teach scale;
* ``median_ratio``: the median of min(error at ×0.8, error at ×1.25) / error at ×1 — how sharply
  the loss's minimum sits at the truth.

A flat-textured world scores low on both (every depth warps a flat colour onto a flat colour), so
the figures separate worlds that teach depth from worlds that only look like streets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SCALES = (0.8, 1.0, 1.25)


@dataclass
class Learnability:
    """Learnability figures of one world at one size (see the module doc)."""

    size: tuple[int, int]
    fraction: float
    median_ratio: float
    pixels: int  # valid pixels the figures are taken over
    frames: int  # target frames measured
    by_class: dict[str, dict[str, float]] = field(default_factory=dict)  # class name -> {fraction, median_ratio, share}

    def as_dict(self) -> dict:
        return asdict(self)


def _relative_pose(T_w_tgt: np.ndarray, T_w_src: np.ndarray) -> np.ndarray:
    """Target camera frame -> source camera frame (4x4), from two camera-to-world poses."""
    return np.linalg.inv(T_w_src) @ T_w_tgt


def pixel_errors(target: np.ndarray, sources: list[np.ndarray], depth: np.ndarray, K: np.ndarray,
                 poses: list[np.ndarray], scales=SCALES) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel min-over-sources photometric errors for each depth scale, and the identity error.

    ``target``/``sources``: (H, W, 3) float images in [0, 1]; ``depth``: (H, W) camera z (finite);
    ``poses[i]``: target -> source i (4x4). Returns (errors (len(scales), H, W), identity (H, W)).
    """
    import torch

    from donna_nas.tasks.depth.geometry import BackprojectDepth, Project3D, warp
    from donna_nas.tasks.depth.losses import photometric_error

    H, W = depth.shape
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    tgt = t(target).permute(2, 0, 1)[None]
    srcs = [t(s).permute(2, 0, 1)[None] for s in sources]
    K4 = np.eye(4)
    K4[:3, :3] = K[:3, :3]
    Kt, invK = t(K4)[None], t(np.linalg.inv(K4))[None]
    back, proj = BackprojectDepth(H, W), Project3D(H, W)
    errs = []
    with torch.no_grad():
        for s in scales:
            pts = back(t(depth * s)[None, None], invK)
            pe = [photometric_error(warp(src, proj(pts, Kt, t(P)[None])), tgt) for src, P in zip(srcs, poses)]
            errs.append(torch.cat(pe, 1).min(1).values[0].numpy())
        ident = torch.cat([photometric_error(src, tgt) for src in srcs], 1).min(1).values[0].numpy()
    return np.stack(errs), ident


def measure(seed: int = 0, drives: int = 2, frames: int = 60, size: tuple[int, int] = (64, 192),
            targets_per_drive: int = 6, world_version: int | None = None, texture: str | None = None) -> Learnability:
    """Learnability of the synthetic world (rendered in memory, nothing written).

    ``targets_per_drive`` target frames are spread evenly over frames 1 … frames−2 of each drive.
    ``world_version``/``texture`` select the renderer (see ``data.synth``); ``texture="flat"`` gives
    the deliberately untextured control world.
    """
    from donna_nas.data import semantics as sem
    from donna_nas.data.synth import FORMAT_VERSION, DriveRenderer
    from donna_nas.data.synth_render import GROUND, SKY
    from donna_nas.tasks.depth.metrics import garg_crop_mask

    version = FORMAT_VERSION if world_version is None else world_version
    H, W = size
    crop = garg_crop_mask(H, W)
    keep_all, ratio_all, cls_all = [], [], []
    n_frames = 0
    for d in range(1, drives + 1):
        r = DriveRenderer(seed, d, frames, size, world_version=version, texture=texture)
        for f in np.linspace(1, frames - 2, targets_per_drive).round().astype(int):
            views = {k: r.render(int(f + k)) for k in (-1, 0, 1)}
            tgt = views[0]
            static = (tgt.obj == GROUND) | ((tgt.obj >= 0) & (r.scene.vel[np.maximum(tgt.obj, 0)] == 0))
            valid = crop & (tgt.obj != SKY) & static & np.isfinite(tgt.depth)
            depth = np.where(np.isfinite(tgt.depth), tgt.depth, 1e3)
            poses = [_relative_pose(r.pose(int(f), "cam2"), r.pose(int(f + k), "cam2")) for k in (-1, 1)]
            errs, ident = pixel_errors(tgt.rgb / 255.0, [views[-1].rgb / 255.0, views[1].rgb / 255.0], depth,
                                       r.cal["K"], poses)
            e_lo, e1, e_hi = errs
            wrong = np.minimum(e_lo, e_hi)
            keep = (e1 < wrong) & (e1 < ident)
            keep_all.append(keep[valid])
            ratio_all.append((wrong / np.maximum(e1, 1e-6))[valid])
            cls_all.append(tgt.labels[valid])
            n_frames += 1
    keep, ratio, cls = np.concatenate(keep_all), np.concatenate(ratio_all), np.concatenate(cls_all)
    by_class = {}
    for cid in np.unique(cls):
        m = cls == cid
        by_class[sem.CLASSES[int(cid)].name] = {"fraction": float(keep[m].mean()), "median_ratio": float(np.median(ratio[m])),
                                           "share": float(m.mean())}
    return Learnability(size=(H, W), fraction=float(keep.mean()) if len(keep) else 0.0,
                        median_ratio=float(np.median(ratio)) if len(ratio) else 0.0, pixels=int(len(keep)),
                        frames=n_frames, by_class=by_class)
