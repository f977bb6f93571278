"""Ground-truth depth from velodyne scans (KITTI devkit procedure) and the ``gt_depths.npz`` format.

Velodyne points with a non-negative forward coordinate are mapped with ``P_rect_0X · R_rect_00 ·
Tr_velo_to_cam`` into the rectified colour image, rounded to the nearest pixel and kept inside the
image (``S_rect_0X``); where several points land on one pixel the smallest depth wins. Two protocols:

- ``kitti``: reproduces the published Eigen ground truth — the depth is the velodyne forward
  coordinate (monodepth2's ``vel_depth``) and pixel indices get the devkit's ``-1`` (a MATLAB 1-based
  carry-over). Use it on real KITTI to compare with published tables.
- ``exact``: the depth is the camera z and pixels are not shifted. For the synthetic world this is
  the rendered depth at that pixel (the velodyne sits 0.27 m behind the camera, so ``vel_depth``
  would be 0.27 m too far).

``auto`` picks ``exact`` for a synthetic directory (``synth.json`` present), ``kitti`` otherwise.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from donna_nas.data.kitti import SplitEntry, load_calibration, read_split
from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path

PROTOCOLS = ("auto", "kitti", "exact")


def read_velodyne(path: str | os.PathLike) -> np.ndarray:
    """(N, 4) float32 points of a KITTI ``.bin`` scan (x, y, z, reflectance)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"velodyne scan {path} is missing")
    pts = np.fromfile(path, dtype="<f4")
    if pts.size % 4:
        raise UserError(f"{path}: size is not a multiple of 4 float32 values; not a KITTI velodyne scan")
    return pts.reshape(-1, 4)


def velodyne_depth_map(calib, points: np.ndarray, cam: int = 2, vel_depth: bool = True,
                       devkit_offset: bool = True) -> np.ndarray:
    """Sparse (H, W) float32 depth of ``points`` seen by camera ``cam``; 0 where no point lands."""
    H, W = calib.image_size[cam]
    pts = points[points[:, 0] >= 0, :3].astype(np.float64)
    hom = np.concatenate([pts, np.ones((len(pts), 1))], 1)
    im = hom @ calib.velo_to_image(cam).T
    z = im[:, 2]
    front = z > 0
    im, pts, z = im[front], pts[front], z[front]
    u = np.round(im[:, 0] / z)
    v = np.round(im[:, 1] / z)
    if devkit_offset:
        u, v = u - 1, v - 1
    depth = pts[:, 0] if vel_depth else z
    ok = (u >= 0) & (v >= 0) & (u < W) & (v < H)
    u, v, depth = u[ok].astype(np.int64), v[ok].astype(np.int64), depth[ok]
    lin = v * W + u
    order = np.lexsort((depth, lin))  # by pixel, nearest first
    lin, depth = lin[order], depth[order]
    first = np.r_[True, lin[1:] != lin[:-1]]  # the nearest point of every pixel
    out = np.zeros(H * W, np.float32)
    out[lin[first]] = depth[first]
    return out.reshape(H, W)


def resolve_protocol(root: Path, protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol must be one of {', '.join(PROTOCOLS)} (got '{protocol}')")
    if protocol == "auto":
        return "exact" if (root / "synth.json").is_file() else "kitti"
    return protocol


def default_split(root: str | os.PathLike) -> str:
    """The evaluation split of a data root: ``test`` (ROOT/splits/test_files.txt) for the synthetic world,
    else the Eigen test split."""
    return "test" if (Path(root) / "synth.json").is_file() else "eigen"


def gt_for_entry(root: Path, e: SplitEntry, protocol: str, calib_cache: dict, benchmark: bool = False) -> np.ndarray:
    """Ground-truth depth of one split line."""
    if benchmark:
        p = root / e.folder / "proj_depth" / "groundtruth" / f"image_0{e.cam}" / f"{e.frame:010d}.png"
        if not p.is_file():
            raise UserError(f"benchmark ground truth {p} is missing (KITTI depth benchmark annotated maps)")
        return np.asarray(Image.open(p), dtype=np.float32) / 256.0
    if e.date not in calib_cache:
        calib_cache[e.date] = load_calibration(root / e.date)
    velo = read_velodyne(root / e.folder / "velodyne_points" / "data" / f"{e.frame:010d}.bin")
    kitti = protocol == "kitti"
    return velodyne_depth_map(calib_cache[e.date], velo, e.cam, vel_depth=kitti, devkit_offset=kitti)


def export_gt(data: str | os.PathLike, split: str | os.PathLike, out: str | os.PathLike | None = None,
              protocol: str = "auto", progress: bool = True) -> Path:
    """Write ``gt_depths.npz`` for a split, in split order, plus ``files``/``protocol``/``crop`` metadata.

    Maps of equal size are stored as one float32 array ``data`` (N, H, W); otherwise (real KITTI mixes
    1242x375, 1241x376 ...) as ``depth_00000``, ``depth_00001`` ... (no pickled object arrays).
    """
    root = Path(data)
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist")
    entries = read_split(split, root)
    benchmark = str(split).startswith("eigen_benchmark")
    proto = "benchmark" if benchmark else resolve_protocol(root, protocol)
    missing = []
    for e in entries:
        p = (root / e.folder / "proj_depth" / "groundtruth" / f"image_0{e.cam}" / f"{e.frame:010d}.png" if benchmark
             else root / e.folder / "velodyne_points" / "data" / f"{e.frame:010d}.bin")
        if not p.is_file():
            missing.append(p)
    if missing:
        hint = ("this is a synthetic dataset: use --split test (its splits/test_files.txt)"
                if (root / "synth.json").is_file() else "check --data (the KITTI raw root) and --split")
        raise UserError(f"{len(missing)} of {len(entries)} ground-truth sources are missing under {root} "
                        f"(first: {', '.join(map(str, missing[:3]))}); {hint}")
    for date in sorted({e.date for e in entries}) if not benchmark else []:
        for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
            if not (root / date / name).is_file():
                raise UserError(f"calibration file {root / date / name} is missing")
    name = Path(str(split)).stem.replace("_files", "") if Path(str(split)).is_file() else str(split).replace("/", "_")
    out = Path(out) if out is not None else root / "gt" / name / "gt_depths.npz"
    crop = "none" if benchmark else "garg"  # the Eigen protocol crops velodyne ground truth
    from rich.progress import Progress

    cache: dict = {}
    with Progress(disable=not progress) as bar:
        task = bar.add_task("export-gt", total=len(entries))
        maps = []
        for e in entries:
            maps.append(gt_for_entry(root, e, proto, cache, benchmark))
            bar.advance(task)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        if len({m.shape for m in maps}) == 1:  # one (N, H, W) array, readable as z["data"]
            _write_npy(zf, "data", np.stack(maps))
        else:  # KITTI image sizes differ between dates: one array per frame
            for i, m in enumerate(maps):
                _write_npy(zf, f"depth_{i:05d}", m)
        _write_npy(zf, "files", np.array([e.line() for e in entries]))
        _write_npy(zf, "protocol", np.array(proto))
        _write_npy(zf, "crop", np.array(crop))
    return out


def _write_npy(zf: zipfile.ZipFile, key: str, arr: np.ndarray) -> None:
    info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def load_gt_depths(path: str | os.PathLike, allow_pickle: bool = False) -> tuple[list[np.ndarray], dict]:
    """Read a ``gt_depths.npz`` (ours, or monodepth2's ``data`` object array with ``allow_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ground-truth file {path} is missing; create it with 'donna-nas data export-gt'")
    if not zipfile.is_zipfile(path):  # a .npy, a text file, a truncated download
        raise UserError(f"{path}: not an .npz archive (ground-truth depths); create it with "
                        "'donna-nas data export-gt' or pass monodepth2's gt_depths.npz")
    try:
        with np.load(path, allow_pickle=allow_pickle) as z:
            meta = {k: str(z[k]) for k in ("protocol", "crop") if k in z.files}
            meta["files"] = [str(s) for s in z["files"]] if "files" in z.files else []
            keys = sorted(k for k in z.files if k.startswith("depth_"))
            if keys:
                return [z[k].astype(np.float32) for k in keys], meta
            if "data" in z.files:
                data = z["data"]
                if data.dtype == object or data.ndim != 3:
                    return [np.asarray(d, np.float32) for d in data], meta
                return list(data.astype(np.float32)), meta
    except ValueError as exc:
        if "pickle" in str(exc):
            raise UserError(f"{path} stores an object array (monodepth2 format); pass --allow-pickle "
                            f"only if you trust the file") from exc
        raise UserError(f"{path}: not a readable .npz ({str(exc).splitlines()[0]}); export it again") from exc
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise UserError(f"{path}: damaged .npz ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "export it again with 'donna-nas data export-gt'") from exc
    raise UserError(f"{path}: no 'depth_NNNNN' or 'data' arrays; not a gt_depths.npz")
