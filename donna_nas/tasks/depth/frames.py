"""KITTI-layout frames for blockwise distillation (the depth task's ``bkd_frames``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from donna_nas.errors import UserError

__all__ = ["load_frames"]


def load_frames(data: str | Path, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
    """Up to ``limit`` target frames (N, 3, H, W) in [0, 1] of ``DATA/splits/<split>_files.txt``,
    evenly spread over the split."""
    root = Path(data)
    split_file = root / "splits" / f"{split}_files.txt"
    if not split_file.is_file():
        raise UserError(f"{split_file}: split file not found; --data must be a KITTI-layout folder "
                        "with splits/ (see `donna-nas data synth`)")
    lines = [ln for ln in split_file.read_text().splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{split_file}: the {split} split is empty; it needs at least one frame")
    from donna_nas.data.kitti import KittiRawDataset

    ds = KittiRawDataset(str(root), str(split_file), size=size, frame_ids=(0,), train=False)
    n = min(limit, len(ds))
    if n == 0:
        raise UserError(f"{split_file}: no usable frames in the {split} split")
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
    return torch.stack([ds[int(i)]["images"][0] for i in idx]).float()
