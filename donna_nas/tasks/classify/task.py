"""The classification task behind ``build-supernet --task classify`` (predictor target: top-1
after a short KD finetune from the blockwise-distilled encoder) and ``finetune --task classify``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from donna_nas.errors import UserError

__all__ = ["ClassifyTask", "TASK"]


@dataclass(frozen=True)
class ClassifyTask:
    name: str = "classify"
    metric: str = "top1"
    direction: str = "maximize"
    table_metrics: tuple[str, ...] = ("top1", "top5")
    ft_lr: float = 2e-3  # AdamW, encoder; the new head learns at 10x
    ft_batch: int = 32
    scores_other_splits: bool = False
    recalibrates_bn: bool = False

    def bkd_frames(self, data: str, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
        from donna_nas.data.imagefolder import load_split

        return load_split(data, split, size, limit)[0]

    def prepare_predictor(self, run: Path, config: Any) -> None:
        if not config.data:
            raise UserError("--task classify needs --data (a folder with train/ and val/ in ImageFolder layout)")

    def deployed_latency(self, run: Path, space: Any, input_size: tuple[int, int], precision: str) -> Any:
        """None: the op-sum latency of the encoder is what classify selects on (no decoder to add)."""
        return None

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        """CE + KD (teacher = the build's teacher when it is a classifier run) for ``job.steps``
        steps, then top-1/top-5 on the validation split. The head and batches are seeded
        identically for every architecture (common random numbers)."""
        from donna_nas.data.imagefolder import load_split
        from donna_nas.distill.assemble import assemble
        from donna_nas.tasks.classify.evaluate import evaluate_logits
        from donna_nas.tasks.classify.losses import classification_loss
        from donna_nas.tasks.classify.model import ClassifierNet
        from donna_nas.tasks.classify.train import cosine_lr, load_classifier, predict_logits, shift_batch

        run = Path(job.run_dir)
        size = (job.height, job.width)
        x, y, classes = load_split(job.data, "train", size)
        xv, yv, _ = load_split(job.data, "val", size, job.val_frames or None)
        teacher = None
        tinfo = json.loads((run / "teacher.json").read_text())
        if job.distill_weight > 0 and tinfo.get("kind") == "depth_run" and tinfo.get("run"):
            try:
                teacher, _ = load_classifier(tinfo["run"])
            except UserError:
                teacher = None  # a depth teacher: no logits, plain cross-entropy
        enc = assemble(run, job.arch, input_size=size, bridge=job.bridge)
        torch.manual_seed(job.seed + 2)
        model = ClassifierNet(enc, len(classes))
        # the head starts from scratch: it learns at 10x the encoder's (distilled) rate
        opt = torch.optim.AdamW([{"params": model.encoder.parameters(), "base": job.lr},
                                 {"params": model.head.parameters(), "base": job.lr * 10}],
                                lr=job.lr, weight_decay=1e-2)
        gen = torch.Generator().manual_seed(job.seed)
        kd_w = 0.5 if teacher is not None else 0.0
        model.train()
        for step in range(job.steps):
            idx = torch.randint(x.shape[0], (min(job.batch, x.shape[0]),), generator=gen)
            xb = shift_batch(x[idx], 2, gen)
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, job.steps, g["base"], min(10, job.steps // 5))
            tl = None
            if teacher is not None:
                with torch.no_grad():
                    tl = teacher(xb)
            loss = classification_loss(model(xb), y[idx], tl, kd_w, 4.0, 0.1)
            if not torch.isfinite(loss):
                raise UserError(f"finetune of {job.arch}: loss became {loss.item()} at step {step}; lower the finetune lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        metrics, _ = evaluate_logits(predict_logits(model, xv), yv)
        return {"top1": metrics["top1"], "top5": metrics["top5"], "val_nll": metrics["nll"]}


TASK = ClassifyTask()
