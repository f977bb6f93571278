"""KITTI raw data (real or synthetic): calibration files, Eigen-format split lists and a dataset.

Split lines are ``<date>/<drive> <frame> <side>`` (``side`` ``l`` = image_02, ``r`` = image_03); the frame
may be zero-padded or not. Images are ``<root>/<date>/<drive>/image_0X/data/<frame:010d>.png`` (or ``.jpg``,
as produced by the monodepth2 conversion); optional semantic labels live in the parallel tree
``<root>/semantics/<date>/<drive>/image_0X/data/<frame:010d>.png``.

Dataset decisions (documented in docs/data.md):
- Lines whose temporal neighbours fall outside the frames present in their drive folder (e.g. frame 0
  with frame id -1) are *skipped* and listed in ``ds.skipped``; any other missing file is an error that
  names the first missing paths and how many are missing.
- Images are resized from their native size to ``size`` with PIL LANCZOS (monodepth2's ANTIALIAS);
  semantic labels with NEAREST.
- Colour jitter and flips come from ``numpy.random.default_rng([seed, epoch, index])``: the same sample
  in the same epoch is augmented identically in every run and every worker.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from donna_nas.data.epochs import EpochDataset
from donna_nas.errors import UserError

#: KITTI intrinsics normalised by image width (row 0) and height (row 1); principal point centred
KITTI_K_NORMALISED = np.array([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)

#: split names shipped with the package (see donna_nas/resources/splits/PROVENANCE.md)
BUILTIN_SPLITS = {
    "eigen": "eigen/test_files.txt",
    "eigen/test": "eigen/test_files.txt",
    "eigen_benchmark": "eigen_benchmark/test_files.txt",
    "eigen_benchmark/test": "eigen_benchmark/test_files.txt",
    "eigen_zhou": "eigen_zhou/train_files.txt.gz",
    "eigen_zhou/train": "eigen_zhou/train_files.txt.gz",
    "eigen_zhou/val": "eigen_zhou/val_files.txt",
}
SIDE_TO_CAM = {"l": 2, "r": 3}


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file."""

    folder: str  # "<date>/<drive>"
    frame: int
    side: str  # "l" or "r"

    @property
    def date(self) -> str:
        return self.folder.split("/")[0]

    @property
    def cam(self) -> int:
        return SIDE_TO_CAM[self.side]

    def line(self) -> str:
        return f"{self.folder} {self.frame} {self.side}"


def builtin_split_path(name: str) -> Path:
    """Path of a split list shipped in the package (``eigen``, ``eigen_zhou/train`` ...)."""
    if name not in BUILTIN_SPLITS:
        raise UserError(f"unknown split '{name}'; built-in splits are {', '.join(sorted(BUILTIN_SPLITS))}")
    return Path(str(resources.files("donna_nas") / "resources" / "splits" / BUILTIN_SPLITS[name]))


def resolve_split(split: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A split given as a file path, a built-in name, or ``NAME`` = ``<root>/splits/NAME_files.txt``."""
    p = Path(split)
    if p.is_file():
        return p
    if root is not None:
        local = Path(root) / "splits" / f"{split}_files.txt"
        if local.is_file():
            return local
    if str(split) in BUILTIN_SPLITS:
        return builtin_split_path(str(split))
    where = f", nor {Path(root) / 'splits' / f'{split}_files.txt'}" if root is not None else ""
    raise UserError(f"split '{split}' is not a file{where}, nor a built-in split "
                    f"({', '.join(sorted(BUILTIN_SPLITS))})")


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return f.read().splitlines()


def read_split(src: str | os.PathLike | Iterable[str], root: str | os.PathLike | None = None) -> list[SplitEntry]:
    """Parse a split (file path, built-in name, or an iterable of lines) into entries."""
    if isinstance(src, (str, os.PathLike)):
        path = resolve_split(src, root)
        lines, name = _read_lines(path), str(path)
    else:
        lines, name = list(src), "<lines>"
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in SIDE_TO_CAM or not parts[1].isdigit() or parts[0].count("/") != 1:
            raise UserError(f"{name}:{n}: expected '<date>/<drive> <frame> <l|r>', got '{line.strip()}'")
        out.append(SplitEntry(parts[0], int(parts[1]), parts[2]))
    if not out:
        raise UserError(f"{name}: the split is empty")
    return out


# ---------------------------------------------------------------- calibration

def read_calib_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration text file (non-numeric values are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"calibration file {path} is missing; KITTI raw calibration comes with each date "
                        f"folder (e.g. 2011_09_26_calib.zip)")
    data: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        try:
            data[key.strip()] = np.array([float(v) for v in value.split()], np.float64)
        except ValueError:
            continue
    return data


@dataclass
class Calibration:
    """What the KITTI devkit needs to project velodyne points into a rectified colour image."""

    P_rect: dict[int, np.ndarray]  # camera -> (3, 4)
    R_rect_00: np.ndarray  # (4, 4)
    velo_to_cam: np.ndarray  # (4, 4) velodyne -> unrectified camera 0
    image_size: dict[int, tuple[int, int]]  # camera -> (H, W) of the rectified images

    def velo_to_image(self, cam: int = 2) -> np.ndarray:
        """(3, 4) matrix taking homogeneous velodyne points to homogeneous pixels of camera ``cam``."""
        return self.P_rect[cam] @ self.R_rect_00 @ self.velo_to_cam

    def K(self, cam: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """4x4 intrinsics of camera ``cam``, scaled to ``size`` = (H, W) if given."""
        K = np.eye(4)
        K[:3, :3] = self.P_rect[cam][:3, :3]
        if size is not None:
            h, w = self.image_size[cam]
            K[0] *= size[1] / w
            K[1] *= size[0] / h
            K[3] = (0, 0, 0, 1)
        return K


def load_calibration(date_dir: str | os.PathLike) -> Calibration:
    """Read ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` of a KITTI date folder."""
    date_dir = Path(date_dir)
    c2c = read_calib_file(date_dir / "calib_cam_to_cam.txt")
    v2c = read_calib_file(date_dir / "calib_velo_to_cam.txt")
    try:
        P = {c: c2c[f"P_rect_0{c}"].reshape(3, 4) for c in range(4)}
        size = {c: (int(c2c[f"S_rect_0{c}"][1]), int(c2c[f"S_rect_0{c}"][0])) for c in range(4)}
        R = np.eye(4)
        R[:3, :3] = c2c["R_rect_00"].reshape(3, 3)
        V = np.eye(4)
        V[:3, :3], V[:3, 3] = v2c["R"].reshape(3, 3), v2c["T"].reshape(3)
    except (KeyError, ValueError) as exc:
        raise UserError(f"{date_dir}: calibration field {exc} missing or malformed "
                        f"(need P_rect_0X, S_rect_0X, R_rect_00 and R, T)") from exc
    return Calibration(P_rect=P, R_rect_00=R, velo_to_cam=V, image_size=size)


# ---------------------------------------------------------------- colour jitter

def _rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(-3)
    maxc, _ = img.max(-3)
    minc, _ = img.min(-3)
    v = maxc
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    dc = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, ((g - b) / dc) % 6, torch.where(maxc == g, (b - r) / dc + 2, (r - g) / dc + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    return torch.stack([h, s, v], -3)


def _hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(-3)
    h6 = (h % 1.0) * 6
    i = torch.floor(h6)
    f = h6 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, (a, b, c) in enumerate(choices):
        m = i == k
        for ch, val in enumerate((a, b, c)):
            out[ch] = torch.where(m, val, out[ch])
    return torch.stack(out, -3)


def _gray(img: torch.Tensor) -> torch.Tensor:
    return (0.299 * img[..., 0, :, :] + 0.587 * img[..., 1, :, :] + 0.114 * img[..., 2, :, :]).unsqueeze(-3)


def color_jitter(img: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 order: Sequence[int]) -> torch.Tensor:
    """Apply the four jitters (in ``order``: 0 brightness, 1 contrast, 2 saturation, 3 hue) to (..., 3, H, W)."""
    for op in order:
        if op == 0:
            img = (img * brightness).clamp(0, 1)
        elif op == 1:
            mean = _gray(img).mean(dim=(-3, -2, -1), keepdim=True)
            img = ((img - mean) * contrast + mean).clamp(0, 1)
        elif op == 2:
            g = _gray(img)
            img = ((img - g) * saturation + g).clamp(0, 1)
        else:
            hsv = _rgb_to_hsv(img)
            hsv = torch.stack([(hsv[..., 0, :, :] + hue) % 1.0, hsv[..., 1, :, :], hsv[..., 2, :, :]], -3)
            img = _hsv_to_rgb(hsv).clamp(0, 1)
    return img


# ---------------------------------------------------------------- dataset

def image_dir(root: Path, folder: str, cam: int) -> Path:
    return root / folder / f"image_0{cam}" / "data"


def semantics_path(root: Path, folder: str, cam: int, frame: int) -> Path:
    return root / "semantics" / folder / f"image_0{cam}" / "data" / f"{frame:010d}.png"


def _missing_error(root: Path, missing: list[Path], total: int) -> UserError:
    first = ", ".join(str(p) for p in missing[:3])
    return UserError(f"{len(missing)} of {total} files needed by the split are missing under {root} "
                     f"(first: {first}); point --data at the KITTI raw root (DATE/DATE_drive_NNNN_sync/"
                     f"image_02/data/*.png|jpg) or use a split that matches the data")


class KittiRawDataset(EpochDataset):
    """Monocular (optionally stereo) frame tuples from KITTI raw, for self-supervised depth.

    ``s = ds[i]`` is a dict: ``images`` (F, 3, H, W) float32 in [0, 1] in ``frame_ids`` order (plus the
    other camera's frame 0 last when ``stereo``), flipped but not colour-jittered; ``images_aug`` the
    same colour-jittered (equal to ``images`` when ``train=False``); ``K``/``inv_K`` (4, 4) at (H, W);
    ``semantics`` (H, W) int64 ids of frame 0 (255 = ignore) if asked; ``stereo_T`` (4, 4) if stereo;
    ``index`` int64.
    """

    def __init__(self, root: str | os.PathLike, split: str | os.PathLike | Iterable[str],
                 size: tuple[int, int] = (192, 640), frame_ids: Sequence[int] = (0, -1, 1), train: bool = True,
                 semantics: bool = False, stereo: bool = False, seed: int = 0, intrinsics: str = "kitti"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(f"data directory {self.root} does not exist")
        if intrinsics not in ("kitti", "calib"):
            raise UserError(f"intrinsics must be 'kitti' or 'calib' (got '{intrinsics}')")
        if 0 not in frame_ids:
            raise UserError(f"frame_ids must contain 0 (got {tuple(frame_ids)})")
        self.size = (int(size[0]), int(size[1]))
        self.frame_ids = tuple(int(f) for f in frame_ids)
        self.train, self.semantics, self.stereo = train, semantics, stereo
        self.seed, self.epoch, self.intrinsics = int(seed), 0, intrinsics
        entries = read_split(split, self.root)
        self._listing: dict[tuple[str, int], dict[int, str]] = {}
        self.entries: list[SplitEntry] = []
        self.skipped: list[SplitEntry] = []
        missing: list[Path] = []
        total = 0
        for e in entries:
            frames = self._frames(e.folder, e.cam)
            lo, hi = (min(frames), max(frames)) if frames else (0, -1)
            needed = [(e.cam, e.frame + f) for f in self.frame_ids]
            if frames and e.frame in frames and any(not lo <= fr <= hi for _, fr in needed):
                self.skipped.append(e)  # a neighbour lies beyond the ends of the drive
                continue
            if stereo:
                needed.append((5 - e.cam, e.frame))
            for cam, fr in needed:
                total += 1
                if fr not in self._frames(e.folder, cam):
                    missing.append(image_dir(self.root, e.folder, cam) / f"{fr:010d}.png")
            if semantics:
                total += 1
                sp = semantics_path(self.root, e.folder, e.cam, e.frame)
                if not sp.is_file():
                    missing.append(sp)
            self.entries.append(e)
        if intrinsics == "calib":
            for date in sorted({e.date for e in self.entries}):
                total += 1
                if not (self.root / date / "calib_cam_to_cam.txt").is_file():
                    missing.append(self.root / date / "calib_cam_to_cam.txt")
        if missing:
            raise _missing_error(self.root, missing, total)
        if not self.entries:
            raise UserError(f"no usable line in the split: all {len(self.skipped)} lines need frames beyond "
                            f"the ends of their drives for frame_ids {self.frame_ids}")
        self._calib: dict[str, Calibration] = {}

    def _frames(self, folder: str, cam: int) -> dict[int, str]:
        key = (folder, cam)
        if key not in self._listing:
            d = image_dir(self.root, folder, cam)
            found: dict[int, str] = {}
            if d.is_dir():
                for name in os.listdir(d):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in (".png", ".jpg", ".jpeg") and stem.isdigit():
                        found.setdefault(int(stem), name)
            self._listing[key] = found
        return self._listing[key]

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch for fresh but reproducible augmentations)."""
        self.epoch = int(epoch)

    def drive_and_frame(self, i: int) -> tuple[str, int, str]:
        e = self.entries[i]
        return e.folder, e.frame, e.side

    def _load(self, folder: str, cam: int, frame: int) -> torch.Tensor:
        path = image_dir(self.root, folder, cam) / self._frames(folder, cam)[frame]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                H, W = self.size
                if im.size != (W, H):
                    im = im.resize((W, H), Image.Resampling.LANCZOS)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt or not an image
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a file-system error: the CLI names the file and errno
            raise UserError(f"{path}: cannot read the image ({str(exc) or type(exc).__name__}); "
                            "replace the file (e.g. re-render with `donna-nas data synth`) or remove "
                            "its frame from the split") from None
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def _K(self, e: SplitEntry, flip: bool) -> np.ndarray:
        H, W = self.size
        if self.intrinsics == "kitti":
            K = KITTI_K_NORMALISED.astype(np.float64).copy()
            K[0] *= W
            K[1] *= H
            return K  # the principal point is taken as centred, so a flip leaves K unchanged
        if e.date not in self._calib:
            self._calib[e.date] = load_calibration(self.root / e.date)
        K = self._calib[e.date].K(e.cam, self.size)
        if flip:
            K[0, 2] = (W - 1) - K[0, 2]  # u -> W-1-u with integer pixel indices
        return K

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        e = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        u = rng.random(6)  # fixed number of draws whatever is used
        order = rng.permutation(4)
        do_jitter = self.train and u[0] < 0.5
        do_flip = self.train and u[1] < 0.5
        imgs = [self._load(e.folder, e.cam, e.frame + f) for f in self.frame_ids]
        if self.stereo:
            imgs.append(self._load(e.folder, 5 - e.cam, e.frame))
        images = torch.stack(imgs)
        if do_flip:
            images = images.flip(-1)
        aug = images
        if do_jitter:
            b, c, s = 0.8 + 0.4 * u[2], 0.8 + 0.4 * u[3], 0.8 + 0.4 * u[4]
            h = -0.1 + 0.2 * u[5]
            aug = color_jitter(images, b, c, s, h, order.tolist())
        K = self._K(e, do_flip)
        out = {
            "images": images,
            "images_aug": aug.contiguous(),
            "K": torch.from_numpy(K.astype(np.float32)),
            "inv_K": torch.from_numpy(np.linalg.pinv(K.astype(np.float32))),
            "index": torch.tensor(index, dtype=torch.int64),
            "flipped": torch.tensor(bool(do_flip)),
        }
        if self.stereo:
            T = np.eye(4, dtype=np.float32)
            T[0, 3] = (-1 if e.side == "l" else 1) * (-1 if do_flip else 1) * 0.1
            out["stereo_T"] = torch.from_numpy(T)
        if self.semantics:
            with Image.open(semantics_path(self.root, e.folder, e.cam, e.frame)) as im:
                H, W = self.size
                if im.size != (W, H):
                    im = im.resize((W, H), Image.Resampling.NEAREST)
                lab = torch.from_numpy(np.asarray(im, dtype=np.int64).copy())
            if do_flip:
                lab = lab.flip(-1)
            out["semantics"] = lab.contiguous()
        return out
