"""The depth task behind ``build-supernet --task depth``: Sq Rel after a short self-supervised
finetune (``donna_nas.predictor.finetune``), KITTI-layout frames for BKD."""

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
        from donna_nas.distill.cache import load_frames

        return load_frames(data, split, size, limit)

    def prepare_predictor(self, run: Path, config: Any) -> None:
        from donna_nas.distill.pipeline import _export_val_gt

        _export_val_gt(run, config)

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        from donna_nas.predictor.finetune import _depth_task

        return _depth_task(job)


TASK = DepthTask()
