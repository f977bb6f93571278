"""Synthetic world writer: procedural drives saved in exactly the KITTI raw layout.

``synthesize(out, drives, frames, size, seed)`` renders ``drives`` street drives of ``frames``
frames each and writes, under ``out``::

    synth.json                                   manifest (the arguments; written last)
    splits/{train,val,test}_files.txt            Eigen-format split lists
    DATE/calib_cam_to_cam.txt                    KITTI text format (S/K/D/R/T, S_rect, R_rect, P_rect 00-03)
    DATE/calib_velo_to_cam.txt                   R, T (velodyne -> unrectified camera 0)
    DATE/DATE_drive_NNNN_sync/image_02/data/%010d.png   left colour camera (image_03: right, 0.54 m)
    DATE/DATE_drive_NNNN_sync/image_0X/timestamps.txt
    DATE/DATE_drive_NNNN_sync/velodyne_points/data/%010d.bin  float32 x, y, z, reflectance
    DATE/DATE_drive_NNNN_sync/poses.txt          image_02 camera-to-frame-0 poses, 12 numbers a line
    semantics/DATE/DATE_drive_NNNN_sync/image_0X/data/%010d.png  uint8 class ids (data/semantics.py)

True depth maps are not stored: ground truth comes from the velodyne scans (``export-gt``), as for KITTI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from donna_nas.data.synth_render import (
    PinholeGrid, RayList, Rendered, ScannerGrid, WorldStyle, cast, render_view, scan,
)
from donna_nas.data.synth_scene import FPS, make_scene, rot_x, rot_z
from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path, write_json_atomic, write_text_atomic

DATE = "2000_01_01"  # synthetic drives live under a date that no real KITTI drive uses
FORMAT_VERSION = 2  # world version written by default; version 1 worlds stay loadable and renderable
BASELINE = 0.54  # metres between image_02 and image_03, as in KITTI
CAM2_OFFSET = 0.06  # image_02 centre is 6 cm left of rectified camera 0 (KITTI-like)
#: velodyne -> camera-0 translation (m); like KITTI: 27 cm behind, 8 cm above the cameras
VELO_T = np.array([-0.004, -0.076, -0.272])
VELO_ELEVATIONS = np.linspace(-24.8, 2.0, 64)  # HDL-64E-like beam elevations (degrees)
VELO_AZIMUTHS = np.arange(-50.0, 50.0 + 1e-9, 0.18)  # forward sector seen by the cameras (degrees)


def default_supersample(size: tuple[int, int]) -> int:
    """Sub-pixel rays per side for world version 2: enough that a pixel integrates texture down to
    the scale that a 192 x 640 render resolves (3 at 64 x 192, 1 at 192 x 640 and above)."""
    n = int(np.ceil(192 / max(int(size[0]), 1)))
    return max(1, n + (n % 2 == 0))


def world_style(version: int, size: tuple[int, int], texture: str | None = None,
                supersample: int | None = None) -> WorldStyle:
    """The rendering style of a world version at a size (version 1 is always point-sampled)."""
    if version == 1:
        return WorldStyle(version=1, texture=texture or "full", supersample=supersample or 1)
    return WorldStyle(version=version, texture=texture or "full",
                      supersample=supersample or default_supersample(size))


def drive_name(i: int) -> str:
    return f"{DATE}_drive_{i:04d}_sync"


def intrinsics(H: int, W: int) -> np.ndarray:
    """KITTI's normalised K (fx 0.58 W, fy 1.92 H, centred principal point) at H x W pixels."""
    return np.array([[0.58 * W, 0, W / 2], [0, 1.92 * H, H / 2], [0, 0, 1.0]])


def rig_calibration(H: int, W: int) -> dict[str, np.ndarray]:
    """All 4x4 transforms and matrices of the synthetic rig (fixed; independent of the seed).

    ``velo_to_cam`` maps velodyne points into the unrectified camera 0, ``R_rect`` rectifies them,
    ``P2``/``P3`` project rectified camera-0 points into image_02/image_03.
    """
    R_velo = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # x fwd,y left,z up -> cam
    R_velo = rot_x(np.deg2rad(0.85)) @ rot_z(np.deg2rad(-0.4)) @ R_velo  # small mounting error
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3], velo_to_cam[:3, 3] = R_velo, VELO_T
    R_rect = np.eye(4)
    R_rect[:3, :3] = rot_z(np.deg2rad(0.3)) @ rot_x(np.deg2rad(-0.2))  # rectifying rotation of camera 0
    K = intrinsics(H, W)

    def P(tx: float) -> np.ndarray:
        return K @ np.hstack([np.eye(3), [[tx], [0.0], [0.0]]])

    return {"K": K, "velo_to_cam": velo_to_cam, "R_rect": R_rect, "P0": P(0.0), "P1": P(-BASELINE),
            "P2": P(CAM2_OFFSET), "P3": P(CAM2_OFFSET - BASELINE)}


def _translation(x: float) -> np.ndarray:
    T = np.eye(4)
    T[0, 3] = x
    return T


def cam_to_rect0(side: int) -> np.ndarray:
    """Camera ``side`` (2 or 3) frame -> rectified camera-0 frame (pure x translation)."""
    tx = CAM2_OFFSET if side == 2 else CAM2_OFFSET - BASELINE
    return _translation(-tx)


def velo_to_rect0(cal: dict) -> np.ndarray:
    return cal["R_rect"] @ cal["velo_to_cam"]


def _fmt(a) -> str:
    return " ".join(f"{float(v):.6e}" for v in np.ravel(a))


def calib_texts(H: int, W: int) -> tuple[str, str]:
    """Contents of calib_cam_to_cam.txt and calib_velo_to_cam.txt in KITTI's text format."""
    cal = rig_calibration(H, W)
    lines = ["calib_time: 01-Jan-2000 00:00:00", "corner_dist: 9.950000e-02"]
    for i, P in enumerate([cal["P0"], cal["P1"], cal["P2"], cal["P3"]]):
        tx = P[0, 3] / cal["K"][0, 0]
        R_rect = cal["R_rect"][:3, :3] if i == 0 else np.eye(3)
        lines += [f"S_{i:02d}: {_fmt([W, H])}", f"K_{i:02d}: {_fmt(cal['K'])}", f"D_{i:02d}: {_fmt(np.zeros(5))}",
                  f"R_{i:02d}: {_fmt(np.eye(3))}", f"T_{i:02d}: {_fmt([-tx + 0.0, 0, 0])}",
                  f"S_rect_{i:02d}: {_fmt([W, H])}", f"R_rect_{i:02d}: {_fmt(R_rect)}", f"P_rect_{i:02d}: {_fmt(P)}"]
    cam = "\n".join(lines) + "\n"
    v = cal["velo_to_cam"]
    velo = (f"calib_time: 01-Jan-2000 00:00:00\nR: {_fmt(v[:3, :3])}\nT: {_fmt(v[:3, 3])}\n"
            f"delta_f: {_fmt([0, 0])}\ndelta_c: {_fmt([0, 0])}\n")
    return cam, velo


class DriveRenderer:
    """Renders the frames of one drive: both colour cameras, labels and the velodyne sweep."""

    def __init__(self, seed: int, drive: int, frames: int, size: tuple[int, int], world_version: int = FORMAT_VERSION,
                 texture: str | None = None, supersample: int | None = None, movers: bool = False):
        H, W = size
        self.style = world_style(world_version, size, texture, supersample)
        self.scene, traj = make_scene(seed, drive, frames, version=world_version, movers=movers)
        self.cal = rig_calibration(H, W)
        self.grid = PinholeGrid(self.cal["K"], H, W)
        self.fine_grid = self.grid.supersampled(self.style.supersample)
        self.scanner = ScannerGrid(VELO_ELEVATIONS, VELO_AZIMUTHS)
        self.cam2_to_world = traj.poses
        self.seed, self.drive = seed, drive

    def pose(self, frame: int, sensor: str) -> np.ndarray:
        """Sensor-to-world 4x4 of 'cam2', 'cam3' or 'velo' at a frame."""
        T_w_c2 = self.cam2_to_world[frame]
        rect0_to_cam2 = np.linalg.inv(cam_to_rect0(2))
        if sensor == "cam2":
            return T_w_c2
        if sensor == "cam3":
            return T_w_c2 @ rect0_to_cam2 @ cam_to_rect0(3)
        if sensor == "velo":
            return T_w_c2 @ rect0_to_cam2 @ velo_to_rect0(self.cal)
        raise ValueError(sensor)

    def render(self, frame: int, side: int = 2) -> Rendered:
        return render_view(self.scene, frame / FPS, self.pose(frame, f"cam{side}"), self.grid, self.style,
                           self.fine_grid)

    def depth_at(self, frame: int, u: np.ndarray, v: np.ndarray, side: int = 2) -> np.ndarray:
        """True camera-z depth at sub-pixel positions (u, v) of image_0{side} (inf = sky)."""
        K = self.cal["K"]
        dirs = np.stack([(np.asarray(u) - K[0, 2]) / K[0, 0], (np.asarray(v) - K[1, 2]) / K[1, 1],
                         np.ones(np.shape(u))], -1)
        t, _, _ = cast(self.scene, frame / FPS, self.pose(frame, f"cam{side}"), RayList(dirs))
        return t[0]

    def velodyne(self, frame: int) -> np.ndarray:
        return scan(self.scene, frame / FPS, self.pose(frame, "velo"), self.scanner,
                    seed=self.seed * 1000 + frame)

    def poses_text(self) -> str:
        """image_02 poses relative to frame 0 (KITTI odometry style: 3x4 row-major per line)."""
        T0inv = np.linalg.inv(self.cam2_to_world[0])
        return "".join(_fmt((T0inv @ T)[:3, :4]) + "\n" for T in self.cam2_to_world)


def _save_png(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG", compress_level=1)


def _save_bin(path: Path, pts: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.ascontiguousarray(pts, dtype="<f4").tofile(tmp)


def _timestamps(frames: int) -> str:
    out = []
    for i in range(frames):
        ns = int(round(i * 1e9 / FPS))
        s, ns = divmod(ns, 10**9)
        out.append(f"2000-01-01 00:{s // 60:02d}:{s % 60:02d}.{ns:09d}\n")
    return "".join(out)


def write_frame(out: Path, r: DriveRenderer, frame: int) -> None:
    """Write every file of one frame of one drive."""
    folder = out / DATE / drive_name(r.drive)
    name = f"{frame:010d}"
    for side in (2, 3):
        view = r.render(frame, side)
        _save_png(folder / f"image_0{side}" / "data" / f"{name}.png", view.rgb)
        _save_png(out / "semantics" / DATE / drive_name(r.drive) / f"image_0{side}" / "data" / f"{name}.png",
                  view.labels)
    _save_bin(folder / "velodyne_points" / "data" / f"{name}.bin", r.velodyne(frame))


def split_lines(drives: int, frames: int) -> dict[str, list[str]]:
    """Eigen-format split lists. Test drives are disjoint from training ones when drives >= 3.

    Only frames with both neighbours (1 .. frames-2) are listed, so [0, -1, +1] triplets always exist.
    Train/val are split by frame (every 10th frame -> val), like Eigen-Zhou; with fewer than 3
    drives every 10th frame (another offset) is a test frame instead.
    """
    ids = list(range(1, drives + 1))
    n_test = max(1, drives // 3) if drives >= 3 else 0
    test_drives, train_drives = ids[len(ids) - n_test:], ids[: len(ids) - n_test]
    inner = list(range(1, frames - 1))
    val_off = min(5, len(inner) // 2)
    test_off = (val_off + 5) % 10 if len(inner) > 10 else (val_off + 1) % max(len(inner), 1)
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for d in train_drives:
        for i, f in enumerate(inner):
            key = "val" if i % 10 == val_off else ("test" if (n_test == 0 and i % 10 == test_off) else "train")
            out[key].append(f"{DATE}/{drive_name(d)} {f} l")
    for d in test_drives:
        out["test"] += [f"{DATE}/{drive_name(d)} {f:010d} l" for f in inner]
    return out


def _check_args(drives: int, frames: int, size: tuple[int, int]) -> None:
    if drives < 1:
        raise UserError(f"--drives must be >= 1 (got {drives})")
    if frames < 3:
        raise UserError(f"--frames must be >= 3 so that [0, -1, +1] triplets exist (got {frames})")
    H, W = size
    if H < 8 or W < 8:
        raise UserError(f"--size must be at least 8x8 (got {H}x{W})")


_WORKER_CACHE: dict = {}


def _render_task(out: str, seed: int, drive: int, frames: int, size: tuple[int, int], frame: int,
                 world_version: int = FORMAT_VERSION, movers: bool = False) -> int:
    """Worker entry point: render and write one frame (the drive's world is built once per process)."""
    key = (seed, drive, frames, size, world_version, movers)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()
        _WORKER_CACHE[key] = DriveRenderer(seed, drive, frames, size, world_version=world_version, movers=movers)
    write_frame(Path(out), _WORKER_CACHE[key], frame)
    return frame


def synthesize(out: str | os.PathLike, drives: int = 3, frames: int = 60, size: tuple[int, int] = (192, 640),
               seed: int = 0, progress: bool = True, workers: int = 1, world_version: int = FORMAT_VERSION,
               movers: bool = False) -> Path:
    """Render the synthetic dataset into ``out``; a finished directory with the same arguments is a no-op.

    ``workers`` > 1 renders frames in that many processes; every frame depends only on (seed, drive,
    frame), so the files are byte-identical whatever the number of workers. ``world_version`` 2 (the
    default) is the learnable world (see ``synth_render.WorldStyle``); 1 re-renders the original world
    byte for byte. ``movers`` adds moving cars (version 2 drives are static otherwise).
    """
    if world_version not in (1, 2):
        raise UserError(f"--world-version must be 1 or 2 (got {world_version})")
    if movers and world_version == 1:
        raise UserError("--movers needs --world-version 2 (version-1 drives always have traffic)")
    out = Path(out)
    size = (int(size[0]), int(size[1]))
    _check_args(drives, frames, size)
    if workers < 1:
        raise UserError(f"--workers must be >= 1 (got {workers})")
    args = {"drives": int(drives), "frames": int(frames), "size": list(size), "seed": int(seed),
            "format_version": int(world_version)}
    if world_version >= 2:
        style = world_style(world_version, size)
        args.update(movers=bool(movers), supersample=style.supersample)
    manifest = out / "synth.json"
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{manifest}: not valid JSON ({exc}); delete it to re-render") from exc
        if old.get("args") == args and old.get("complete"):
            return out
        if old.get("args") != args:
            raise UserError(f"{out} already holds a synthetic dataset made with {old.get('args')}; "
                            f"use another --out or delete the directory")
    H, W = size
    cam, velo = calib_texts(H, W)
    write_text_atomic(out / DATE / "calib_cam_to_cam.txt", cam)
    write_text_atomic(out / DATE / "calib_velo_to_cam.txt", velo)
    done = set(json.loads(manifest.read_text()).get("drives_done", [])) if manifest.exists() else set()
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
    try:
        with Progress(TextColumn("synth"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                      TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as bar:
            task = bar.add_task("synth", total=drives * frames, completed=len(done) * frames)
            for d in range(1, drives + 1):
                if d in done:
                    continue
                r = DriveRenderer(seed, d, frames, size, world_version=world_version, movers=movers)
                folder = out / DATE / drive_name(d)
                if pool is None:
                    for f in range(frames):
                        write_frame(out, r, f)
                        bar.advance(task)
                else:
                    jobs = [pool.submit(_render_task, str(out), seed, d, frames, size, f, world_version, movers)
                            for f in range(frames)]
                    for job in jobs:
                        job.result()
                        bar.advance(task)
                write_text_atomic(folder / "poses.txt", r.poses_text())
                for side in (2, 3):
                    write_text_atomic(folder / f"image_0{side}" / "timestamps.txt", _timestamps(frames))
                write_text_atomic(folder / "velodyne_points" / "timestamps.txt", _timestamps(frames))
                done.add(d)
                write_json_atomic(manifest, {"args": args, "complete": False, "drives_done": sorted(done)})
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for name, lines in split_lines(drives, frames).items():
        write_text_atomic(out / "splits" / f"{name}_files.txt", "".join(line + "\n" for line in lines))
    write_json_atomic(manifest, {"args": args, "complete": True, "drives_done": sorted(done)})
    return out
