"""Procedural street scenes for the synthetic KITTI-layout world.

A scene is a straight street along the world x axis (world frame: x forward, y left, z up, metres,
like KITTI's velodyne frame): a ground plane (road with lane markings, sidewalks, verges) plus
axis-aligned boxes for building facades, parked and moving vehicles, poles and trees. Boxes keep
the ray caster exact and fast; moving vehicles slide along x with a constant speed, which breaks the
static-scene assumption of self-supervised depth exactly like real traffic does. Everything is
drawn from ``numpy.random.default_rng([seed, drive])`` so a seed fixes the world bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from donna_nas.data import semantics as sem

# texture kinds of boxes
TEX_FACADE, TEX_CAR, TEX_POLE, TEX_TRUNK, TEX_FOLIAGE = 0, 1, 2, 3, 4

FPS = 10.0  # KITTI raw frame rate
CAM_HEIGHT = 1.65  # KITTI colour cameras' height above the road (m)
ROAD_HALF = 6.0  # two 3.5 m lanes + 2.5 m parking strips
SIDEWALK = 3.0  # sidewalk width beyond the road edge


@dataclass
class Scene:
    """Boxes (at time 0) and the street layout of one drive."""

    lo: np.ndarray  # (M, 3) min corner at t = 0
    hi: np.ndarray  # (M, 3) max corner at t = 0
    cls: np.ndarray  # (M,) semantic id
    tex: np.ndarray  # (M,) texture kind
    color: np.ndarray  # (M, 3) base albedo in [0, 1]
    vel: np.ndarray  # (M,) speed along world x (m/s); 0 = static
    x_range: tuple[float, float]  # extent of the ground plane along x
    texture_seed: int

    def boxes_at(self, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Box corners at ``time_s`` seconds (moving vehicles shifted along x)."""
        shift = np.zeros_like(self.lo)
        shift[:, 0] = self.vel * time_s
        return self.lo + shift, self.hi + shift


@dataclass
class Trajectory:
    """Left colour camera (image_02, rectified) poses, cam-to-world 4x4, one per frame."""

    poses: np.ndarray  # (F, 4, 4)


def _add(boxes: list, lo, hi, cls, tex, color, vel=0.0) -> None:
    boxes.append((lo, hi, cls, tex, color, vel))


def make_scene(seed: int, drive: int, frames: int, version: int = 1, movers: bool = False) -> tuple[Scene, Trajectory]:
    """Generate one drive's street and the camera path through it.

    Version 1 always has traffic (oncoming cars, a car ahead at about ego speed). Version 2 is a
    static street unless ``movers``: moving objects break the static-scene assumption that
    self-supervised depth trains on, so they appear only when asked for (to test robustness), and then
    as cars in the ego lane at ego speed, the case Monodepth2's auto-mask exists for, plus oncoming cars.
    """
    rng = np.random.default_rng([int(seed), int(drive)])
    speed = float(rng.uniform(7.0, 11.0))  # ego speed m/s (~1 m per frame at 10 Hz)
    if version >= 2:  # 10-15 m/s: more parallax per frame, still a city street (36-55 km/h)
        speed *= 1.4
    duration = frames / FPS
    x_end = speed * duration + 100.0  # world extends ~100 m beyond the last camera position
    x_start = -30.0
    boxes: list = []

    # building facades on both sides, with occasional gaps
    for side in (-1.0, 1.0):
        x = x_start
        while x < x_end:
            width = rng.uniform(8.0, 22.0)
            if rng.random() < 0.15:  # gap (alley / empty lot)
                x += width * 0.6
                continue
            setback = rng.uniform(0.0, 3.0)
            near = ROAD_HALF + SIDEWALK + setback
            height = rng.uniform(6.0, 22.0)
            color = rng.uniform(0.4, 0.75) * 0.6 + 0.4 * rng.uniform(0.3, 0.9, 3) * np.array([1.0, 0.95, 0.85])
            ylo, yhi = (near, near + 12.0) if side > 0 else (-near - 12.0, -near)
            _add(boxes, (x, ylo, 0.0), (x + width, yhi, height), sem.BUILDING, TEX_FACADE, color)
            x += width + rng.uniform(0.0, 1.5)

    # parked cars on the parking strips, moving cars in the lanes
    def car(xc: float, yc: float, vel: float) -> None:
        length, width, height = rng.uniform(3.8, 4.8), rng.uniform(1.65, 1.9), rng.uniform(1.35, 1.7)
        color = rng.uniform(0.05, 0.9, 3)
        _add(boxes, (xc - length / 2, yc - width / 2, 0.0), (xc + length / 2, yc + width / 2, height),
             sem.CAR, TEX_CAR, color, vel)

    for side in (-1.0, 1.0):
        x = x_start + rng.uniform(0, 8)
        while x < x_end:
            if rng.random() < 0.7:
                car(x, side * (ROAD_HALF - 1.25) + rng.normal(0, 0.1), 0.0)
            x += rng.uniform(5.5, 12.0)
    if version == 1 or movers:
        n_oncoming = int(rng.integers(2, 6))
        for _ in range(n_oncoming):  # oncoming traffic in the left lane
            car(rng.uniform(0, x_end + speed * duration), 1.75, -rng.uniform(6.0, 12.0))
        for _ in range(int(rng.integers(1, 3))):  # a car ahead in the ego lane, about ego speed
            car(rng.uniform(15.0, 45.0), -1.75, speed * rng.uniform(1.0, 1.1))  # never closes in on the camera

    # poles and trees on the sidewalks
    for side in (-1.0, 1.0):
        ys = side * (ROAD_HALF + 0.5)
        x = x_start + rng.uniform(0, 10)
        while x < x_end:
            r = 0.08
            _add(boxes, (x - r, ys - r, 0.0), (x + r, ys + r, rng.uniform(4.0, 7.0)), sem.POLE, TEX_POLE,
                 np.full(3, rng.uniform(0.4, 0.6)))
            x += rng.uniform(14.0, 28.0)
        yt = side * (ROAD_HALF + SIDEWALK - 0.9)
        x = x_start + rng.uniform(0, 10)
        while x < x_end:
            if rng.random() < 0.6:
                tr, th = 0.15, rng.uniform(2.0, 3.2)
                _add(boxes, (x - tr, yt - tr, 0.0), (x + tr, yt + tr, th), sem.VEGETATION, TEX_TRUNK,
                     np.array([0.35, 0.25, 0.15]))
                cw, ch = rng.uniform(1.2, 2.0), rng.uniform(1.8, 3.5)
                _add(boxes, (x - cw, yt - cw, th), (x + cw, yt + cw, th + ch), sem.VEGETATION, TEX_FOLIAGE,
                     np.array([0.2, 0.45, 0.15]) * rng.uniform(0.7, 1.2))
            x += rng.uniform(7.0, 16.0)

    lo = np.array([b[0] for b in boxes], dtype=np.float64)
    hi = np.array([b[1] for b in boxes], dtype=np.float64)
    scene = Scene(
        lo=lo, hi=hi,
        cls=np.array([b[2] for b in boxes], dtype=np.int64),
        tex=np.array([b[3] for b in boxes], dtype=np.int64),
        color=np.clip(np.array([b[4] for b in boxes], dtype=np.float64), 0, 1),
        vel=np.array([b[5] for b in boxes], dtype=np.float64),
        x_range=(x_start - 50.0, x_end),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )
    return scene, _trajectory(rng, frames, speed)


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


#: camera (x right, y down, z forward) -> world (x forward, y left, z up) at zero yaw/pitch
CAM_TO_WORLD_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _trajectory(rng: np.random.Generator, frames: int, speed: float) -> Trajectory:
    """Forward drive in the right lane with a gentle lateral weave, small yaw and pitch changes."""
    t = np.arange(frames) / FPS
    ph = rng.uniform(0, 2 * np.pi, 4)
    amp_y = rng.uniform(0.1, 0.4)
    w_y = rng.uniform(0.3, 0.7)
    x = speed * t
    y = -1.75 + amp_y * np.sin(w_y * t + ph[0])
    dy = amp_y * w_y * np.cos(w_y * t + ph[0])
    yaw = np.arctan2(dy, speed) + np.deg2rad(1.5) * np.sin(0.9 * t + ph[1])
    pitch = np.deg2rad(0.8) * np.sin(1.7 * t + ph[2])
    z = CAM_HEIGHT + 0.02 * np.sin(2.3 * t + ph[3])
    poses = np.zeros((frames, 4, 4))
    for i in range(frames):
        poses[i, :3, :3] = rot_z(yaw[i]) @ CAM_TO_WORLD_AXES @ rot_x(pitch[i])
        poses[i, :3, 3] = (x[i], y[i], z[i])
        poses[i, 3, 3] = 1.0
    return Trajectory(poses=poses)
