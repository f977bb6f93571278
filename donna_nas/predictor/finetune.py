"""Short finetunes of architectures assembled from distilled blocks: the predictor's targets.

A ``FinetuneJob`` names its task; the task's ``predictor_finetune`` does the work
(``donna_nas.tasks``: ``depth`` → Sq Rel after a short self-supervised finetune, ``classify`` →
top-1, ``distill`` → the label-free tap-NSR proxy). ``TapDistiller`` is the NSR distillation of
an encoder's taps towards the teacher's that the tasks share.

Jobs are picklable and seeded; each writes ``RUN/jobs/ft-<arch hash>.json`` atomically.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from donna_nas.runtime.io import write_json_atomic

__all__ = ["FinetuneJob", "TapDistiller", "run_finetune_job", "tap_variances", "TASKS"]

TASKS = ("depth", "classify", "distill")  # the tasks of donna_nas.tasks.base.available_tasks()


@dataclass(frozen=True)
class FinetuneJob:
    run_dir: str
    arch: str
    task: str = "depth"
    data: str | None = None
    steps: int = 50
    batch: int = 4
    lr: float = 2e-4
    height: int = 64
    width: int = 192
    distill_weight: float = 0.1
    seed: int = 0
    threads: int = 1
    val_frames: int = 0  # 0: the whole validation split
    # what the finetune optimises (the task decides what it supports): "selfsup" (the task's own
    # training loss), "kd" (match the teacher's outputs) or "kd+selfsup"
    objective: str = "selfsup"
    # where the task head starts (the task decides what it supports): "random", or "stitched"
    # (depth: the teacher's decoder through the BKD adapters, donna_nas.tasks.depth.stitch)
    decoder: str = "random"
    # further splits of ``data`` the finetuned model is also scored on (depth: e.g. "test"), their
    # metrics keyed "SPLIT/METRIC": reported beside the target to study its noise, never the target
    # itself. Not part of ``job_id``: a run folder's records should all share one choice.
    eval_splits: tuple[str, ...] = ()
    # > 0 (depth): after the finetune, re-estimate the encoder's batch-norm statistics on this many
    # cached, un-augmented training frames before scoring; the score with the finetune's own running
    # statistics is reported beside it under "bn_running/METRIC". Not part of ``job_id`` either.
    bn_recalibrate: int = 0
    # fold each block boundary's BKD adapters into the next block when assembling the start point
    # (donna_nas.distill.assemble); False joins the distilled blocks raw, as releases before the
    # bridges did. A comparison switch (experiments/predictor_rank.py --raw-join); not in ``job_id``.
    bridge: bool = True

    @property
    def job_id(self) -> str:
        """One record per architecture and seed (seed 0 keeps the architecture-only id)."""
        import hashlib

        key = self.arch if self.seed == 0 else f"{self.arch}|seed={self.seed}"
        return "ft-" + hashlib.sha1(key.encode()).hexdigest()[:12]


def run_finetune_job(job: FinetuneJob) -> dict[str, Any]:
    prev = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        t0 = time.time()
        torch.manual_seed(job.seed)
        random.seed(job.seed)
        np.random.seed(job.seed)
        from donna_nas.errors import UserError
        from donna_nas.tasks.base import get_task

        task = get_task(job.task)
        if job.eval_splits and not task.scores_other_splits:
            raise UserError(f"finetune of {job.arch}: --task {job.task} scores only its own validation split; "
                            f"drop eval_splits {list(job.eval_splits)} (the depth task supports them)")
        if job.bn_recalibrate and not task.recalibrates_bn:
            raise UserError(f"finetune of {job.arch}: --task {job.task} does not recalibrate batch norm after its "
                            f"finetune; drop bn_recalibrate {job.bn_recalibrate} (the depth task supports it)")
        metrics = task.predictor_finetune(job)
        record = {"job_id": job.job_id, "job": asdict(job), "arch": job.arch, "metrics": metrics,
                  "seconds": round(time.time() - t0, 3)}
        write_json_atomic(Path(job.run_dir) / "jobs" / f"{job.job_id}.json", record)
        return record
    finally:
        torch.set_num_threads(prev)


class TapDistiller(nn.Module):
    """1×1 adapters from the student's taps to the teacher's; loss = mean NSR over the taps."""

    def __init__(self, student_ch: list[int], teacher_ch: list[int], variances: list[torch.Tensor]):
        super().__init__()
        self.adapters = nn.ModuleList(nn.Conv2d(s, t, 1) for s, t in zip(student_ch, teacher_ch))
        for i, v in enumerate(variances):
            self.register_buffer(f"var{i}", v.float())

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        from donna_nas.distill.nsr import nsr

        losses = []
        for i, (a, s, t) in enumerate(zip(self.adapters, student, teacher)):
            y = a(s)
            if y.shape[-2:] != t.shape[-2:]:
                y = nn.functional.interpolate(y, size=t.shape[-2:], mode="bilinear", align_corners=False)
            losses.append(nsr(y, t, getattr(self, f"var{i}")))
        return torch.stack(losses).mean()


def tap_variances(run: Path, n: int) -> list[torch.Tensor]:
    """The teacher's per-channel variance of its first ``n`` taps on the run's cached training
    frames (NSR's σ²)."""
    from donna_nas.distill.cache import FeatureCache

    c = FeatureCache(run / "cache", "train")
    return [c.variance(i) for i in range(n)]
