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

Two breakdowns say *where* a world fails to teach, because the remedies differ:

* ``by_flow``: by how far the pixel moves to frame t+1 under the true depth and pose. Near the focus
  of expansion, and far away, a pixel moves under a pixel: ×0.8 and ×1.25 then shift the warp by a
  fraction of that, and no texture can tell them apart. More ego motion or resolution helps, texture
  does not.
* ``by_region``: pixels within ``EDGE_PX`` of a depth or object discontinuity against the interior.
  At an occlusion edge the 3×3 SSIM window mixes foreground and background that move differently, so
  the true depth need not win there. At low resolution a large share of a street's pixels is near an
  edge; fewer, larger objects help, texture does not.

``by_kind`` partitions the pixels once, in this order: flow under 1 px; near a depth jump (an
occlusion); near an object boundary across which depth is continuous (a facade meeting the road, two
facades side by side); the interior. The first two are set mostly by the street's geometry and the
camera's motion, so ``ceiling`` is the fraction the world would reach if every pixel of the other
two taught depth, the first two staying as measured: how much is left to win away from occlusions
and the focus of expansion. (Texture moves the occlusion pixels' fraction too, so the ceiling is
that of this texture, not a bound on every texture.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SCALES = (0.8, 1.0, 1.25)
#: Upper bounds (pixels) of the ``by_flow`` bins; the last bin is open.
FLOW_BINS = (1.0, 2.0, 4.0)
#: A pixel within this many pixels of a depth or object discontinuity is "near an edge".
EDGE_PX = 2
#: A depth discontinuity: |log depth| changes by more than this between 4-neighbours (a 35% jump;
#: the ground plane's row-to-row change stays below it up to about 70 m at 64 rows).
EDGE_LOG_DEPTH = 0.3
#: ``by_kind``'s classes, in the order a pixel is assigned to the first that applies.
KINDS = ("flow <1 px", "depth jump", "object edge", "interior")
#: The kinds set mostly by geometry and motion: too little flow, or an occlusion (``ceiling``).
GEOMETRY_KINDS = ("flow <1 px", "depth jump")


@dataclass
class Learnability:
    """Learnability figures of one world at one size (see the module doc)."""

    size: tuple[int, int]
    fraction: float
    median_ratio: float
    pixels: int  # valid pixels the figures are taken over
    frames: int  # target frames measured
    by_class: dict[str, dict[str, float]] = field(default_factory=dict)  # class name -> {fraction, median_ratio, share}
    by_flow: dict[str, dict[str, float]] = field(default_factory=dict)  # "<1 px", "1-2 px", ... -> {fraction, median_ratio, share}
    by_region: dict[str, dict[str, float]] = field(default_factory=dict)  # "near edge" / "interior" -> {fraction, median_ratio, share}
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)  # KINDS -> {fraction, median_ratio, share}
    ceiling: float = 0.0  # the fraction if every pixel outside GEOMETRY_KINDS were kept (module doc)

    def as_dict(self) -> dict:
        return asdict(self)


def _relative_pose(T_w_tgt: np.ndarray, T_w_src: np.ndarray) -> np.ndarray:
    """Target camera frame -> source camera frame (4x4), from two camera-to-world poses."""
    return np.linalg.inv(T_w_src) @ T_w_tgt


def flow_magnitude(depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Pixels each pixel moves to the source view: ``depth`` (H, W) camera z, ``pose`` target -> source.

    Uses the same integer-pixel grid as the warp; a displacement is convention-free anyway.
    """
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K[:3, :3]).T
    pts = rays * depth[..., None] @ pose[:3, :3].T + pose[:3, 3]
    proj = pts @ K[:3, :3].T
    z = np.maximum(proj[..., 2], 1e-6)
    return np.hypot(proj[..., 0] / z - u, proj[..., 1] / z - v)


def _grow(edge: np.ndarray, radius: int) -> np.ndarray:
    """``edge`` dilated by ``radius`` pixels (Chebyshev)."""
    grown = edge.copy()
    H, W = edge.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            src = edge[max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
            grown[max(0, dy):H - max(0, -dy), max(0, dx):W - max(0, -dx)] |= src
    return grown


def _jumps(changed_down: np.ndarray, changed_right: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Both pixels of every 4-neighbour pair marked in ``changed_down`` (rows) / ``changed_right`` (columns)."""
    edge = np.zeros(shape, bool)
    edge[:-1] |= changed_down
    edge[1:] |= changed_down
    edge[:, :-1] |= changed_right
    edge[:, 1:] |= changed_right
    return edge


def depth_jumps(depth: np.ndarray, radius: int = EDGE_PX) -> np.ndarray:
    """Pixels within ``radius`` of a depth jump (``EDGE_LOG_DEPTH``): the occlusion contours."""
    ld = np.log(np.maximum(depth, 1e-3))
    return _grow(_jumps(np.abs(np.diff(ld, axis=0)) > EDGE_LOG_DEPTH, np.abs(np.diff(ld, axis=1)) > EDGE_LOG_DEPTH,
                        depth.shape), radius)


def object_edges(obj: np.ndarray, radius: int = EDGE_PX) -> np.ndarray:
    """Pixels within ``radius`` of an object-id change (depth may be continuous there)."""
    return _grow(_jumps(np.diff(obj, axis=0) != 0, np.diff(obj, axis=1) != 0, obj.shape), radius)


def near_edge(depth: np.ndarray, obj: np.ndarray, radius: int = EDGE_PX) -> np.ndarray:
    """Pixels within ``radius`` (Chebyshev) of a depth jump (``EDGE_LOG_DEPTH``) or an object-id change."""
    return depth_jumps(depth, radius) | object_edges(obj, radius)


def pixel_kinds(depth: np.ndarray, obj: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Index into ``KINDS`` of every pixel (the first kind that applies)."""
    kind = np.full(depth.shape, KINDS.index("interior"), np.int8)
    kind[object_edges(obj)] = KINDS.index("object edge")
    kind[depth_jumps(depth)] = KINDS.index("depth jump")
    kind[flow < FLOW_BINS[0]] = KINDS.index("flow <1 px")
    return kind


def _groups(keep: np.ndarray, ratio: np.ndarray, key: np.ndarray, names: dict) -> dict[str, dict[str, float]]:
    out = {}
    for k, name in names.items():
        m = key == k
        if m.any():
            out[name] = {"fraction": float(keep[m].mean()), "median_ratio": float(np.median(ratio[m])),
                         "share": float(m.mean())}
    return out


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
    keep_all, ratio_all, cls_all, flow_all, edge_all, kind_all = [], [], [], [], [], []
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
            flow = flow_magnitude(depth, r.cal["K"], poses[1])
            flow_all.append(flow[valid])
            edge_all.append(near_edge(depth, tgt.obj)[valid])
            kind_all.append(pixel_kinds(depth, tgt.obj, flow)[valid])
            n_frames += 1
    keep, ratio, cls = np.concatenate(keep_all), np.concatenate(ratio_all), np.concatenate(cls_all)
    flow, edge, kind = np.concatenate(flow_all), np.concatenate(edge_all), np.concatenate(kind_all)
    by_class = _groups(keep, ratio, cls, {int(c): sem.CLASSES[int(c)].name for c in np.unique(cls)})
    edges = (0.0,) + FLOW_BINS
    flow_names = {i: f"{lo:g}-{hi:g} px" for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))}
    flow_names[0] = f"<{FLOW_BINS[0]:g} px"
    flow_names[len(FLOW_BINS)] = f">={FLOW_BINS[-1]:g} px"
    by_flow = _groups(keep, ratio, np.searchsorted(np.asarray(FLOW_BINS), flow, side="right"), flow_names)
    by_region = _groups(keep, ratio, edge.astype(int), {1: "near edge", 0: "interior"})
    by_kind = _groups(keep, ratio, kind, dict(enumerate(KINDS)))
    ceiling = sum(v["share"] * (v["fraction"] if k in GEOMETRY_KINDS else 1.0) for k, v in by_kind.items())
    return Learnability(size=(H, W), fraction=float(keep.mean()) if len(keep) else 0.0,
                        median_ratio=float(np.median(ratio)) if len(ratio) else 0.0, pixels=int(len(keep)),
                        frames=n_frames, by_class=by_class, by_flow=by_flow, by_region=by_region,
                        by_kind=by_kind, ceiling=float(ceiling))
