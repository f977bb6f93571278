"""Vectorised ray casting of a synthetic street scene (numpy).

Rays are organised as 2-D grids (a pinhole image or a velodyne beam x azimuth sweep). For every box
the caster first bounds the grid cells whose rays can hit it (projected corner rectangle for a
pinhole camera, azimuth/elevation interval for the scanner) and runs the slab test only there, so the
cost is roughly proportional to the screen area the boxes cover, not to rays x boxes. Surfaces are
textured in object/world coordinates, so the same surface point has the same colour in every frame
(world version 1: up to the distance fade of fine texture octaves; version 2: exactly, with the
camera's area integration modelled per texture band and by sub-pixel rays, see ``WorldStyle``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from donna_nas.data import semantics as sem
from donna_nas.data.synth_scene import (
    ROAD_HALF, SIDEWALK, TEX_CAR, TEX_FACADE, TEX_FOLIAGE, TEX_POLE, TEX_TRUNK, Scene,
)

SKY, GROUND = -2, -1  # object ids of non-box hits
_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]
_SUN = np.array([0.35, 0.55, 0.76], np.float32) / np.linalg.norm([0.35, 0.55, 0.76])


@dataclass
class Rendered:
    """One rendered camera view."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 camera z in metres; inf where the ray sees the sky
    labels: np.ndarray  # (H, W) uint8 semantic ids (semantics.CLASSES)
    obj: np.ndarray  # (H, W) int32 box index, -1 ground, -2 sky


@dataclass(frozen=True)
class WorldStyle:
    """How surfaces are coloured and pixels sampled; part of a world's format (``synth.json``).

    ``version`` 1 is the original world: point-sampled pixels whose fine texture octaves fade with the
    pixel footprint, so a surface point's colour drifts as the camera approaches it. ``version`` 2
    makes every surface point one colour in every frame (view-independent albedo, no fading) with
    more mid-frequency texture, and integrates each pixel over ``supersample`` × ``supersample``
    sub-pixel rays (area sampling, as a camera does) so that fine texture averages instead of
    aliasing. ``texture="flat"`` paints every surface one colour per object: the control world that
    self-supervision cannot learn depth from.
    """

    version: int = 2
    texture: str = "full"
    supersample: int = 1

    def __post_init__(self):
        if self.version not in (1, 2):
            raise ValueError(f"world version must be 1 or 2 (got {self.version})")
        if self.texture not in ("full", "flat"):
            raise ValueError(f"texture must be 'full' or 'flat' (got {self.texture!r})")
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(f"supersample must be an odd number >= 1 (got {self.supersample})")


def _corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(M, 8, 3) box corners; corner k uses hi on axis a iff bit a of k is set."""
    bits = np.array([[(k >> a) & 1 for a in range(3)] for k in range(8)], bool)
    return np.where(bits[None], hi[:, None, :], lo[:, None, :])


def _front_points(local: np.ndarray, axis: int, near: float) -> np.ndarray:
    """Vertices of a box (8 local-frame corners) clipped to the half-space ``local[axis] >= near``."""
    pts = [local[local[:, axis] >= near]]
    for a, b in _EDGES:
        za, zb = local[a, axis], local[b, axis]
        if (za - near) * (zb - near) < 0:
            s = (near - za) / (zb - za)
            pts.append((local[a] + s * (local[b] - local[a]))[None])
    return np.concatenate(pts, 0)


class PinholeGrid:
    """Rays of a pinhole camera with pixel centres at integer indices (u = column, v = row)."""

    def __init__(self, K: np.ndarray, H: int, W: int):
        self.K, self.H, self.W = np.asarray(K, np.float64)[:3, :3], H, W
        u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
        pix = np.stack([u, v, np.ones_like(u)], -1)
        self.dirs = (pix @ np.linalg.inv(self.K).T).astype(np.float32)  # camera frame, z = 1

    def supersampled(self, n: int) -> "PinholeGrid":
        """The n x n sub-pixel rays of every pixel as one (n H, n W) grid; n odd, so the middle
        sub-ray of each pixel is its centre ray exactly."""
        if n == 1:
            return self
        K = self.K.copy()
        K[0, 0] *= n
        K[1, 1] *= n
        K[0, 2] = K[0, 2] * n + (n - 1) / 2
        K[1, 2] = K[1, 2] * n + (n - 1) / 2
        return PinholeGrid(K, self.H * n, self.W * n)

    def ranges(self, local: np.ndarray) -> list:
        """Cell rectangles (r0, r1, c0, c1) per box from its (M, 8, 3) corners in the camera frame."""
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        near = 0.05
        out = []
        for pts in local:
            z = pts[:, 2]
            if z.max() < near:
                out.append(None)
                continue
            if z.min() < near:
                pts = _front_points(pts, 2, near)
            u = fx * pts[:, 0] / pts[:, 2] + cx
            v = fy * pts[:, 1] / pts[:, 2] + cy
            c0, c1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, self.W)
            r0, r1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, self.H)
            out.append((r0, r1, c0, c1) if (r1 > r0 and c1 > c0) else None)
        return out


class RayList:
    """Arbitrary rays (1 x N grid) tested against every box: for checks at sub-pixel positions."""

    def __init__(self, dirs: np.ndarray):
        self.dirs = np.asarray(dirs, np.float32).reshape(1, -1, 3)
        self.H, self.W = 1, self.dirs.shape[1]

    def ranges(self, local: np.ndarray) -> list:
        return [(0, 1, 0, self.W)] * len(local)


class ScannerGrid:
    """Rays of a rotating multi-beam LiDAR in its own frame (x forward, y left, z up).

    Rows are beams sorted by ascending elevation, columns ascending azimuth (from right to left).
    """

    def __init__(self, elevations_deg: np.ndarray, azimuths_deg: np.ndarray):
        self.el = np.deg2rad(np.sort(np.asarray(elevations_deg, np.float64)))
        self.az = np.deg2rad(np.sort(np.asarray(azimuths_deg, np.float64)))
        e, a = np.meshgrid(self.el, self.az, indexing="ij")
        self.dirs = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).astype(np.float32)
        self.H, self.W = len(self.el), len(self.az)

    def ranges(self, local: np.ndarray) -> list:
        near = 0.05
        out = []
        for pts in local:
            x = pts[:, 0]
            if x.max() < near:
                out.append(None)
                continue
            if x.min() < near:
                pts = _front_points(pts, 0, near)
            az = np.arctan2(pts[:, 1], pts[:, 0])
            rh = np.hypot(pts[:, 0], pts[:, 1])
            xmin, rmax = pts[:, 0].min(), rh.max()
            zmin, zmax = pts[:, 2].min(), pts[:, 2].max()
            el_hi = np.arctan2(zmax, xmin if zmax > 0 else rmax)
            el_lo = np.arctan2(zmin, xmin if zmin < 0 else rmax)
            c0 = int(np.searchsorted(self.az, az.min(), "left"))
            c1 = int(np.searchsorted(self.az, az.max(), "right"))
            r0 = int(np.searchsorted(self.el, el_lo, "left"))
            r1 = int(np.searchsorted(self.el, el_hi, "right"))
            c0, r0 = max(c0 - 1, 0), max(r0 - 1, 0)
            c1, r1 = min(c1 + 1, self.W), min(r1 + 1, self.H)
            out.append((r0, r1, c0, c1) if (r1 > r0 and c1 > c0) else None)
        return out


def cast(scene: Scene, time_s: float, pose: np.ndarray, grid, max_range: float = 250.0):
    """Closest hit along every ray of ``grid`` from a sensor at ``pose`` (sensor-to-world 4x4).

    Returns (t, obj, dirs_world): ray parameter (inf = no hit), object id, world ray directions. With
    a pinhole grid t is the camera z depth (directions have z = 1 in the camera frame).
    """
    R = np.asarray(pose[:3, :3], np.float64)
    o = np.asarray(pose[:3, 3], np.float64)
    D = (grid.dirs @ R.T.astype(np.float32)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = (1.0 / D).astype(np.float32)
        # ground plane z = 0, bounded in x to the generated street
        tg = (-o[2] / D[..., 2]).astype(np.float32)
        xg = o[0] + tg * D[..., 0]
        ground = (D[..., 2] < 0) & (xg > scene.x_range[0]) & (xg < scene.x_range[1])
    t = np.where(ground, tg, np.float32(np.inf)).astype(np.float32)
    obj = np.where(ground, GROUND, SKY).astype(np.int32)
    lo, hi = scene.boxes_at(time_s)
    # cull boxes far away
    center = 0.5 * (lo + hi)
    radius = 0.5 * np.linalg.norm(hi - lo, axis=1)
    keep = np.nonzero(np.linalg.norm(center - o, axis=1) - radius < max_range)[0]
    local = (_corners(lo[keep], hi[keep]) - o) @ R  # world -> sensor frame
    ol = o.astype(np.float32)
    inv_planes = [np.ascontiguousarray(inv[..., a]) for a in range(3)]
    for k, rect in zip(keep, grid.ranges(local)):
        if rect is None:
            continue
        r0, r1, c0, c1 = rect
        tmin = tmax = None
        with np.errstate(invalid="ignore", over="ignore"):
            for a in range(3):  # slab test, one axis at a time (fast contiguous planes)
                ia = inv_planes[a][r0:r1, c0:c1]
                t1 = (np.float32(lo[k, a]) - ol[a]) * ia
                t2 = (np.float32(hi[k, a]) - ol[a]) * ia
                near, far = np.minimum(t1, t2), np.maximum(t1, t2)
                tmin = near if tmin is None else np.maximum(tmin, near)
                tmax = far if tmax is None else np.minimum(tmax, far)
            tcur = t[r0:r1, c0:c1]
            upd = (tmax >= tmin) & (tmin > 1e-4) & (tmin < tcur)
        if upd.any():
            tcur[upd] = tmin[upd]
            obj[r0:r1, c0:c1][upd] = k
    return t, obj, D


# ---------------------------------------------------------------- textures

def _mix(h: np.ndarray) -> np.ndarray:
    """Integer avalanche of uint32 lattice keys -> float32 in [0, 1)."""
    h = h ^ (h >> np.uint32(13))
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _hash(ix: np.ndarray, iy: np.ndarray, seed) -> np.ndarray:
    hx = np.asarray(ix).astype(np.int64).astype(np.uint32) * np.uint32(0x8DA6B343)
    hy = np.asarray(iy).astype(np.int64).astype(np.uint32) * np.uint32(0xD8163841)
    return _mix(hx ^ hy ^ np.asarray(seed, np.uint32))


def vnoise(a: np.ndarray, b: np.ndarray, scale: float, seed) -> np.ndarray:
    """Smooth value noise in [0, 1] on a lattice of spacing ``scale`` (metres)."""
    a = a / np.float32(scale)
    b = b / np.float32(scale)
    ia, ib = np.floor(a), np.floor(b)
    fa, fb = a - ia, b - ib
    fa = fa * fa * (3 - 2 * fa)
    fb = fb * fb * (3 - 2 * fb)
    # lattice keys: (i * C) mod 2^32 for both corners of each axis (i + 1 -> key + C)
    hx0 = ia.astype(np.int32).view(np.uint32) * np.uint32(0x8DA6B343)
    hy0 = ib.astype(np.int32).view(np.uint32) * np.uint32(0xD8163841)
    hx1 = hx0 + np.uint32(0x8DA6B343)
    hy1 = hy0 + np.uint32(0xD8163841)
    sd = np.asarray(seed, np.uint32)
    hy0 ^= sd
    hy1 ^= sd
    n00, n10 = _mix(hx0 ^ hy0), _mix(hx1 ^ hy0)
    n01, n11 = _mix(hx0 ^ hy1), _mix(hx1 ^ hy1)
    return (n00 + (n10 - n00) * fa) * (1 - fb) + (n01 + (n11 - n01) * fa) * fb


def _fade(fp: np.ndarray, wavelength: float) -> np.ndarray:
    """Weight of a texture octave: 1 when well resolved, 0 when a pixel covers half its wavelength."""
    return np.clip(2.0 - 4.0 * fp / wavelength, 0.0, 1.0).astype(np.float32)


def _ground_regions(x, y):
    """Empty albedo, semantic labels and the road / sidewalk / terrain masks of ground points."""
    ay = np.abs(y)
    out = np.empty(x.shape + (3,), np.float32)
    lab = np.full(x.shape, sem.ID["terrain"], np.uint8)
    road = ay < ROAD_HALF
    side = (~road) & (ay < ROAD_HALF + SIDEWALK)
    terr = ~(road | side)
    lab[road], lab[side] = sem.ROAD, sem.SIDEWALK
    return out, lab, road, side, terr


def _ground_albedo(x, y, fp, seed):
    out, lab, road, side, terr = _ground_regions(x, y)
    if road.any():
        xr, yr, f = x[road], y[road], fp[road]
        g = 0.30 + 0.12 * (vnoise(xr, yr, 3.0, seed) - 0.5) + 0.14 * _fade(f, 0.4) * (vnoise(xr, yr, 0.4, seed + 1) - 0.5)
        ayr = np.abs(yr)
        mark = ((ayr < 0.08) & (np.mod(xr, 9.0) < 3.0)) | (np.abs(ayr - 3.5) < 0.08)
        g = np.where(mark, 0.85, g)
        out[road] = np.stack([g, g, g * 1.04], -1)
    if side.any():
        xs, ys, f = x[side], y[side], fp[side]
        g = 0.56 + 0.10 * (vnoise(xs, ys, 1.0, seed + 2) - 0.5) + 0.12 * _fade(f, 0.25) * (vnoise(xs, ys, 0.25, seed + 3) - 0.5)
        joint = (np.mod(xs, 1.2) < 0.06) | (np.mod(ys, 1.2) < 0.06)
        g = g * (1 - 0.35 * joint * _fade(f, 0.3))
        out[side] = np.stack([g, g * 0.98, g * 0.94], -1)
    if terr.any():
        xt, yt, f = x[terr], y[terr], fp[terr]
        n = 0.7 + 0.6 * vnoise(xt, yt, 1.5, seed + 4) + 0.4 * _fade(f, 0.3) * (vnoise(xt, yt, 0.3, seed + 5) - 0.5)
        out[terr] = np.array([0.33, 0.38, 0.18], np.float32) * n[:, None]
    return out, lab


def _texture_groups(tex: np.ndarray):
    """(kind, slice) of every texture kind present in ``tex``, which is sorted by kind."""
    bounds = np.searchsorted(tex, np.arange(TEX_FOLIAGE + 2))
    for kind in (TEX_FACADE, TEX_CAR, TEX_POLE, TEX_TRUNK, TEX_FOLIAGE):
        m = slice(int(bounds[kind]), int(bounds[kind + 1]))
        if m.stop > m.start:
            yield kind, m


def _box_albedo(tex, col, s, z, zr, top, fp, seed):
    """Albedo of box surface points sorted by texture kind ``tex``; s, z: face coordinates (object frame)."""
    out = np.empty(s.shape + (3,), np.float32)
    for kind, m in _texture_groups(tex):
        ss, zz, c, f, sd, tp, zrel = s[m], z[m], col[m], fp[m], seed[m], top[m], zr[m]
        if kind == TEX_FACADE:
            a = c * (0.8 + 0.4 * vnoise(ss, zz, 2.0, sd))[:, None]
            row = np.floor(zz / 0.25)
            brick = (np.mod(zz, 0.25) < 0.03) | (np.mod(ss + 0.25 * np.mod(row, 2), 0.5) < 0.03)
            a = a * (1 - 0.25 * brick * _fade(f, 0.25))[:, None]
            win = ((np.mod(ss, 3.5) > 0.9) & (np.mod(ss, 3.5) < 2.6) & (np.mod(zz, 3.2) > 0.9)
                   & (np.mod(zz, 3.2) < 2.5) & (zz > 3.0) & ~tp)
            glass = (0.10 + 0.25 * vnoise(ss, zz, 0.8, sd + 7))[:, None] * np.array([0.9, 1.0, 1.2], np.float32)
            a = np.where(win[:, None], glass, a)
        elif kind == TEX_CAR:
            a = c * (0.85 + 0.3 * vnoise(ss, zz, 0.5, sd))[:, None]
            dark = (zrel < 0.3) & ~tp
            glass = (zrel > 0.6) & (zrel < 0.92) & ~tp
            a = np.where(dark[:, None], np.float32(0.07), a)
            a = np.where(glass[:, None], (0.12 + 0.2 * vnoise(ss, zz, 0.3, sd + 3))[:, None] * np.ones(3, np.float32), a)
        elif kind == TEX_POLE:
            a = c * (0.75 + 0.5 * vnoise(zz, ss, 0.3, sd))[:, None]
        elif kind == TEX_TRUNK:
            a = c * (0.6 + 0.8 * vnoise(ss * 4, zz, 0.3, sd))[:, None]
        else:
            n = 0.45 + 0.8 * vnoise(ss, zz, 0.6, sd) + 0.6 * _fade(f, 0.2) * (vnoise(ss, zz, 0.2, sd + 1) - 0.5)
            a = c * n[:, None]
        out[m] = a
    return out


# ---------------------------------------------------------------- world version 2 albedo
# Every texture term is a band-limited pattern weighted by the camera's modulation transfer at the
# pixel footprint: a pattern of period P (metres) seen with footprint fp (metres per pixel) keeps
# contrast exp(-K_MTF (fp / P)^2), the response of a Gaussian pixel aperture (sigma 0.55 px) to a
# sinusoid of that period. This is what a camera's area integration does to texture, smoothly and
# without a cut-off: the warped neighbour frame and the target frame then see the same surface with
# the same blur up to the small footprint change between frames, instead of aliasing noise. Hard
# patterns (joints, mortar, tiles) fade toward their area mean, so a surface keeps its mean colour at
# every distance.

K_MTF = 2 * np.pi**2 * 0.55**2


def _mtf(fp, period: float):
    return np.exp(-np.float32(K_MTF) * (fp / np.float32(period)) ** 2).astype(np.float32)


def _band(a, b, period: float, seed, fp):
    """Zero-mean value noise of lattice ``period`` (metres), attenuated by the camera MTF."""
    return (vnoise(a, b, period, seed) - 0.5) * _mtf(fp, 2 * period)


def _cells(a, b, size_a, size_b, seed):
    """Per-cell uniform value in [0, 1) of a (size_a x size_b) grid, and the in-cell coordinates."""
    ia, ib = np.floor(a / np.float32(size_a)), np.floor(b / np.float32(size_b))
    return _hash(ia, ib, seed), a - ia * np.float32(size_a), b - ib * np.float32(size_b)


def _lines(mask, width: float, period: float, fp):
    """Hard line pattern (1 on lines) blended toward its area coverage as it falls below resolution."""
    m = _mtf(fp, 2 * width)
    return mask * m + np.float32(width / period) * (1 - m)


def _box1(a, lo: float, hi: float, fp):
    """Antialiased indicator of lo < a < hi: the share of a pixel footprint ``fp`` that lies inside."""
    w = np.maximum(fp, np.float32(1e-4))
    inside = np.minimum(a + w / 2, np.float32(hi)) - np.maximum(a - w / 2, np.float32(lo))
    return (np.maximum(inside, 0) / w).astype(np.float32)


def _ground_albedo_v2(x, y, fp, seed):
    out, lab, road, side, terr = _ground_regions(x, y)
    if road.any():
        xr, yr, f = x[road], y[road], fp[road]
        g = (0.32 + 0.16 * _band(xr, yr, 4.0, seed, f) + 0.30 * _band(xr, yr, 1.2, seed + 1, f)
             + 0.24 * _band(xr, yr, 0.5, seed + 11, f) + 0.14 * _band(xr, yr, 0.2, seed + 12, f))
        g = g * (1 - 0.3 * np.clip(4 * (vnoise(xr, yr, 2.5, seed + 13) - 0.7), 0, 1))  # repaired patches
        ayr = np.abs(yr)
        mark = ((ayr < 0.08) & (np.mod(xr, 9.0) < 3.0)) | (np.abs(ayr - 3.5) < 0.08)
        g = g + (0.85 - g) * _lines(mark, 0.16, 3.5, f)
        kerb = ayr > ROAD_HALF - 0.25
        g = np.where(kerb, 0.62 + 0.12 * _band(xr, yr, 0.5, seed + 14, f), g)
        out[road] = np.stack([g, g, g * 1.04], -1)
    if side.any():
        xs, ys, f = x[side], y[side], fp[side]
        g = 0.50 + 0.34 * _band(xs, ys, 1.0, seed + 2, f) + 0.24 * _band(xs, ys, 0.35, seed + 3, f)
        u, v = np.mod(xs + 0.3, 0.6) - 0.3, np.mod(ys + 0.3, 0.6) - 0.3  # tile joints every 0.6 m
        m = _mtf(f, 0.12)
        joint = np.maximum(_box1(u, -0.03, 0.03, f), _box1(v, -0.03, 0.03, f)) * m + 0.2 * (1 - m)
        g = g * (1 - 0.45 * joint)
        out[side] = np.stack([g, g * 0.97, g * 0.92], -1)
    if terr.any():
        xt, yt, f = x[terr], y[terr], fp[terr]
        n = (0.95 + 0.7 * _band(xt, yt, 1.5, seed + 4, f) + 0.5 * _band(xt, yt, 0.4, seed + 5, f)
             + 0.3 * _band(xt, yt, 0.15, seed + 6, f))
        out[terr] = np.array([0.33, 0.38, 0.18], np.float32) * n[:, None]
    return out, lab


def _box_albedo_v2(tex, col, s, z, zr, top, fp, seed):
    """Version-2 albedo of box surface points sorted by texture kind (see ``_box_albedo``)."""
    out = np.empty(s.shape + (3,), np.float32)
    for kind, m in _texture_groups(tex):
        ss, zz, c, f, sd, tp, zrel = s[m], z[m], col[m], fp[m], seed[m], top[m], zr[m]
        if kind == TEX_FACADE:
            row = np.floor(zz / 0.3)
            brick, bu, bv = _cells(ss + 0.3 * np.mod(row, 2), zz, 0.6, 0.3, sd)
            a = c * (1.0 + 0.8 * _band(ss, zz, 2.0, sd + 5, f) + 0.5 * _band(ss, zz, 0.7, sd + 6, f)
                     + 0.4 * (brick - 0.5) * _mtf(f, 0.6))[:, None]
            mortar = _lines((bu < 0.05) | (bv < 0.04), 0.045, 0.45, f)
            a = a * (1 - 0.4 * mortar)[:, None]
            ms, mz = np.mod(ss, 3.5), np.mod(zz, 3.2)
            win = _box1(ms, 0.9, 2.6, f) * _box1(mz, 0.9, 2.5, f) * (zz > 3.0) * ~tp
            pane = win * (1 - _box1(ms, 1.69, 1.81, f) * _mtf(f, 0.24))
            glass = (0.12 + 0.5 * _band(ss, zz, 0.7, sd + 7, f))[:, None] * np.array([0.9, 1.0, 1.2], np.float32)
            a = a * (1 - pane)[:, None] + glass * pane[:, None]
        elif kind == TEX_CAR:
            a = c * (1.0 + 0.6 * _band(ss, zz, 1.0, sd + 4, f) + 0.5 * _band(ss, zz, 0.35, sd, f))[:, None]
            dark = (zrel < 0.3) & ~tp
            glass = (zrel > 0.6) & (zrel < 0.92) & ~tp
            a = np.where(dark[:, None], (0.1 + 0.1 * _band(ss, zz, 0.2, sd + 2, f))[:, None] * np.ones(3, np.float32), a)
            a = np.where(glass[:, None], (0.22 + 0.25 * _band(ss, zz, 0.3, sd + 3, f))[:, None] * np.ones(3, np.float32), a)
        elif kind == TEX_POLE:
            a = c * (1.0 + 0.6 * _band(zz, ss, 0.3, sd, f))[:, None]
        elif kind == TEX_TRUNK:
            a = c * (1.0 + 0.8 * _band(ss * 4, zz, 0.3, sd, f))[:, None]
        else:
            n = (0.8 + 1.0 * _band(ss, zz, 0.6, sd, f) + 0.8 * _band(ss, zz, 0.25, sd + 1, f)
                 + 0.4 * _band(ss, zz, 0.1, sd + 2, f))
            a = c * n[:, None]
        out[m] = a
    return out


def _flat_ground(x, y):
    ay = np.abs(y)
    lab = np.where(ay < ROAD_HALF, sem.ROAD, np.where(ay < ROAD_HALF + SIDEWALK, sem.SIDEWALK, sem.ID["terrain"]))
    grey = np.where(ay < ROAD_HALF, 0.3, np.where(ay < ROAD_HALF + SIDEWALK, 0.55, 0.35)).astype(np.float32)
    return np.repeat(grey[:, None], 3, 1), lab.astype(np.uint8)


def shade(scene: Scene, time_s: float, origin: np.ndarray, D: np.ndarray, t: np.ndarray, obj: np.ndarray,
          focal: float, style: WorldStyle = WorldStyle(version=1)) -> tuple[np.ndarray, np.ndarray]:
    """Colour (float32 (..., 3) in [0, 1]) and semantic ids of every ray's hit, in ``style``."""
    shape = t.shape
    n = t.size
    rgb = np.empty((n, 3), np.float32)
    lab = np.empty(n, np.uint8)
    Dx, Dy, Dz = (np.ascontiguousarray(D[..., a]).ravel() for a in range(3))
    tf, of = t.ravel(), obj.ravel()
    norm = np.sqrt(Dx * Dx + Dy * Dy + Dz * Dz)
    o = origin.astype(np.float32)
    sky = np.flatnonzero(of == SKY)
    el = np.clip(Dz[sky] / norm[sky] * 3.0, 0, 1)[:, None]
    rgb[sky] = (1 - el) * np.array([0.78, 0.84, 0.90], np.float32) + el * np.array([0.33, 0.52, 0.85], np.float32)
    lab[sky] = sem.SKY
    g = np.flatnonzero(of == GROUND)
    if len(g):
        tg = tf[g]
        x, y = o[0] + tg * Dx[g], o[1] + tg * Dy[g]
        fp = tg / focal / np.maximum(np.abs(Dz[g]) / norm[g], 0.05) * norm[g]
        if style.texture == "flat":
            alb, lab[g] = _flat_ground(x, y)
        elif style.version == 1:
            alb, lab[g] = _ground_albedo(x, y, fp, scene.texture_seed)
        else:
            alb, lab[g] = _ground_albedo_v2(x, y, fp, scene.texture_seed)
        rgb[g] = alb * np.float32(0.6 + 0.4 * _SUN[2])
    b = np.flatnonzero(of >= 0)
    if len(b):
        b = b[np.argsort(scene.tex[of[b]].astype(np.int8), kind="stable")]  # group pixels by texture kind
        k = of[b]
        lo, hi = scene.boxes_at(time_s)
        lo, hi = lo.astype(np.float32)[k], hi.astype(np.float32)[k]
        tb = tf[b]
        dxyz = (Dx[b], Dy[b], Dz[b])
        rel = [o[a] + tb * dxyz[a] - lo[:, a] for a in range(3)]  # hit point in the box frame
        ext = hi - lo
        # the face the point lies on: smallest distance to one of the six planes
        best = np.abs(rel[0])
        face = np.zeros(len(b), np.int8)
        for f in range(1, 6):
            a = f % 3
            dist = np.abs(rel[a]) if f < 3 else np.abs(ext[:, a] - rel[a])
            closer = dist < best
            best = np.where(closer, dist, best)
            face[closer] = f
        axis = face % 3
        sign = np.where(face < 3, np.float32(-1), np.float32(1))
        top = axis == 2
        s = np.where(axis == 0, rel[1], rel[0])
        z = np.where(top, rel[1], rel[2])
        zr = rel[2] / np.maximum(ext[:, 2], 1e-3)
        dn_axis = np.choose(axis, dxyz) / norm[b]
        cosi = np.abs(dn_axis)
        fp = tb * norm[b] / focal / np.maximum(cosi, 0.05)
        seed = np.uint32(scene.texture_seed) + k.astype(np.uint32) * np.uint32(7919)
        if style.texture == "flat":
            alb = scene.color.astype(np.float32)[k]
        elif style.version == 1:
            alb = _box_albedo(scene.tex[k], scene.color.astype(np.float32)[k], s, z, zr, top, fp, seed)
        else:
            alb = _box_albedo_v2(scene.tex[k], scene.color.astype(np.float32)[k], s, z, zr, top, fp, seed)
        light = 0.6 + 0.4 * np.maximum(sign * _SUN[axis], 0)
        rgb[b] = alb * light[:, None]
        lab[b] = scene.cls[k].astype(np.uint8)
    return np.clip(rgb, 0, 1).reshape(shape + (3,)), lab.reshape(shape)


def render_view(scene: Scene, time_s: float, cam_pose: np.ndarray, grid: PinholeGrid,
                style: WorldStyle = WorldStyle(version=1), fine_grid: PinholeGrid | None = None) -> Rendered:
    """Render colour, depth (camera z), semantic ids and object ids of one pinhole view.

    With ``style.supersample`` n > 1 the colour is the mean over each pixel's n x n sub-pixel rays
    (``fine_grid``, made from ``grid`` when not given); depth, labels and object ids are those of the
    centre sub-ray, which is the pixel's own ray, so geometry is identical to n = 1.
    """
    n = style.supersample
    fine = grid if n == 1 else (fine_grid or grid.supersampled(n))
    t, obj, D = cast(scene, time_s, cam_pose, fine)
    rgb, lab = shade(scene, time_s, cam_pose[:3, 3], D, t, obj, float(grid.K[0, 0]), style)
    if n > 1:
        H, W = grid.H, grid.W
        rgb = rgb.reshape(H, n, W, n, 3).mean((1, 3))
    if n > 1:
        c = n // 2
        t, obj, lab = t[c::n, c::n], obj[c::n, c::n], lab[c::n, c::n]
    img = np.round(rgb * 255).astype(np.uint8)
    return Rendered(rgb=img, depth=np.ascontiguousarray(t, dtype=np.float32), labels=np.ascontiguousarray(lab),
                    obj=np.ascontiguousarray(obj))


def scan(scene: Scene, time_s: float, velo_pose: np.ndarray, grid: ScannerGrid, max_range: float = 120.0,
         seed: int = 0) -> np.ndarray:
    """LiDAR points (N, 4) float32: x, y, z in the scanner frame and a reflectance in [0, 1]."""
    t, obj, _ = cast(scene, time_s, velo_pose, grid, max_range=max_range + 10)
    hit = np.isfinite(t) & (t <= max_range)
    pts = grid.dirs[hit] * t[hit][:, None]
    refl_of_class = np.full(256, 0.3, np.float32)
    for cid, r in ((sem.ROAD, 0.25), (sem.SIDEWALK, 0.35), (sem.BUILDING, 0.4), (sem.CAR, 0.6),
                   (sem.POLE, 0.5), (sem.VEGETATION, 0.2)):
        refl_of_class[cid] = r
    o = obj[hit]
    cls = np.where(o >= 0, scene.cls[np.maximum(o, 0)], sem.ROAD)
    refl = refl_of_class[cls] + 0.1 * _hash(np.arange(len(o)), np.full(len(o), seed), 17)
    return np.concatenate([pts, refl[:, None]], 1).astype(np.float32)
