"""The depth task behind ``build-supernet --task depth``: Sq Rel after a short self-supervised
finetune (``donna_nas.tasks.depth.predictor``), KITTI-layout frames for BKD
(``donna_nas.tasks.depth.frames``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DepthTask", "TASK"]


@dataclass(frozen=True)
class DepthTask:
    name: str = "depth"
    metric: str = "sq_rel"
    direction: str = "minimize"
    table_metrics: tuple[str, ...] = ("sq_rel", "abs_rel")
    ft_lr: float = 2e-4  # default predictor-finetune learning rate (Adam)
    ft_batch: int = 4

    def bkd_frames(self, data: str, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
        from donna_nas.tasks.depth.frames import load_frames

        return load_frames(data, split, size, limit)

    def prepare_predictor(self, run: Path, config: Any) -> None:
        """Export the validation split's velodyne ground truth once (``RUN/cache/val_gt.npz``)."""
        from donna_nas.tasks.depth.predictor import export_val_gt

        export_val_gt(run, config.data)

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        from donna_nas.tasks.depth.predictor import predictor_finetune

        return predictor_finetune(job)


TASK = DepthTask()
