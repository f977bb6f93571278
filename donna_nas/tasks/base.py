"""What build-supernet, the predictor finetunes and ``finetune`` need from a task.

A task is one module ``donna_nas/tasks/<name>/task.py`` that defines ``TASK``, an object with the
``Task`` interface below; ``get_task(name)`` finds it, so adding a task means adding that module.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import torch

from donna_nas.errors import UserError

__all__ = ["Task", "get_task", "available_tasks"]


class Task(Protocol):
    name: str
    metric: str  # the predictor's target (a key of ``predictor_finetune``'s result)
    direction: str  # "minimize" (e.g. Sq Rel) or "maximize" (e.g. top-1)
    table_metrics: tuple[str, ...]  # metrics kept in tables/predictor_train.csv
    ft_lr: float  # default learning rate of the predictor finetunes
    ft_batch: int  # and their default batch size
    scores_other_splits: bool  # whether predictor_finetune honours FinetuneJob.eval_splits
    recalibrates_bn: bool  # whether predictor_finetune honours FinetuneJob.bn_recalibrate

    def bkd_frames(self, data: str, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
        """Up to ``limit`` images (N,3,H,W) in [0,1] of ``split`` ("train"/"val") for BKD."""

    def prepare_predictor(self, run: Path, config: Any) -> None:
        """One-off work before the predictor finetunes (e.g. export validation ground truth)."""

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        """Short finetune of ``job.arch`` from the distilled blocks of ``job.run_dir``; metrics."""

    def deployed_latency(self, run: Path, space: Any, input_size: tuple[int, int], precision: str) -> Any:
        """A ``donna_nas.search.select.DeployedLatency`` that times this task's deployed network of
        a candidate and of the run's teacher, or ``None`` when the task has none to time."""


def available_tasks() -> list[str]:
    root = Path(__file__).parent
    return sorted(p.name for p in root.iterdir() if (p / "task.py").is_file())


def get_task(name: str) -> Task:
    if name not in available_tasks():
        raise UserError(f"--task {name!r}: unknown task; available: {', '.join(available_tasks())}")
    return importlib.import_module(f"donna_nas.tasks.{name}.task").TASK
