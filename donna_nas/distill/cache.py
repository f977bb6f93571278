"""Frames and the teacher's taps on them, computed once and cached in ``RUN/cache/``.

Every block of every supernet reads the same teacher features, so the teacher runs once per frame
instead of once per block and step. Layout per split (``train``, ``val``)::

    cache/<split>/images.npy    uint8 (N, 3, H, W)
    cache/<split>/tap<i>.npy    float16 (N, C_i, H_i, W_i), i = 0 .. blocks-1
    cache/<split>/meta.json     frames, size, teacher description (written last: marks completion)

``cache/var<i>.npy`` holds the per-channel teacher variance on the training frames (NSR's σ²).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path, write_json_atomic

__all__ = ["FeatureCache", "build_cache"]


@dataclass
class FeatureCache:
    """Read access to a cached split: images and taps as float32 tensors."""

    root: Path
    split: str

    @property
    def dir(self) -> Path:
        return self.root / self.split

    def meta(self) -> dict[str, Any]:
        return json.loads((self.dir / "meta.json").read_text())

    def images(self) -> torch.Tensor:
        return torch.from_numpy(np.load(self.dir / "images.npy")).float() / 255.0

    def tap(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.load(self.dir / f"tap{i}.npy").astype(np.float32))

    def variance(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.load(self.root / f"var{i}.npy"))

    def __len__(self) -> int:
        return int(self.meta()["frames"])


def _complete(d: Path, want: dict[str, Any]) -> bool:
    try:
        meta = json.loads((d / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all(meta.get(k) == v for k, v in want.items())


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


@torch.no_grad()
def build_cache(root: Path, teacher, frames: dict[str, torch.Tensor], teacher_info: dict[str, Any],
                batch: int = 8) -> dict[str, FeatureCache]:
    """Run the teacher on each split's frames (skipped when a matching cache exists)."""
    from donna_nas.distill.nsr import channel_variance

    root = Path(root)
    out = {}
    for split, imgs in frames.items():
        if imgs.shape[0] == 0:
            raise UserError(f"the {split} split has no frames; BKD needs training and held-out frames")
        d = root / split
        want = {"frames": int(imgs.shape[0]), "size": list(imgs.shape[-2:]), "teacher": teacher_info}
        if not _complete(d, want):
            u8 = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
            taps: list[list[torch.Tensor]] = []
            for s in range(0, u8.shape[0], batch):
                feats = teacher(u8[s:s + batch].float() / 255.0)
                taps.append([f.half() for f in feats])
            _save_npy(d / "images.npy", u8.numpy())
            for i in range(len(taps[0])):
                _save_npy(d / f"tap{i}.npy", torch.cat([t[i] for t in taps]).numpy())
            if split == "train":
                for i in range(len(taps[0])):
                    var = channel_variance(torch.cat([t[i] for t in taps]).float())
                    _save_npy(root / f"var{i}.npy", var.numpy())
            write_json_atomic(d / "meta.json", dict(want, taps=len(taps[0])))
        out[split] = FeatureCache(root, split)
    return out
