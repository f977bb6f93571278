"""The label-free distillation proxy behind ``build-supernet --task distill`` (tests, quick
looks): the predictor's target is the mean held-out NSR of an architecture's taps against the
teacher's after a short tap-distillation finetune on the cached frames. Cheap: no labels, no
decoder. BKD reads KITTI-layout frames, as the depth task does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["DistillTask", "TASK"]


@dataclass(frozen=True)
class DistillTask:
    name: str = "distill"
    metric: str = "val_nsr"
    direction: str = "minimize"
    table_metrics: tuple[str, ...] = ("val_nsr",)
    ft_lr: float = 2e-4
    ft_batch: int = 4
    scores_other_splits: bool = False
    recalibrates_bn: bool = False

    def bkd_frames(self, data: str, split: str, size: tuple[int, int], limit: int) -> torch.Tensor:
        from donna_nas.tasks.depth.frames import load_frames

        return load_frames(data, split, size, limit)

    def prepare_predictor(self, run: Path, config: Any) -> None:
        """Nothing to prepare: the targets come from the run's feature cache."""

    def deployed_latency(self, run: Path, space: Any, input_size: tuple[int, int], precision: str) -> Any:
        """None: the op-sum latency of the encoder is what distill selects on (no decoder to add)."""
        return None

    def predictor_finetune(self, job: Any) -> dict[str, float]:
        """Finetune the encoder to the teacher's taps on the cached frames for ``job.steps``
        steps; the mean held-out NSR over the taps (and per tap)."""
        from donna_nas.distill.assemble import assemble
        from donna_nas.distill.cache import FeatureCache
        from donna_nas.distill.nsr import NSRAccumulator
        from donna_nas.predictor.finetune import TapDistiller, tap_variances

        run = Path(job.run_dir)
        enc = assemble(run, job.arch, bridge=job.bridge)
        tr, va = FeatureCache(run / "cache", "train"), FeatureCache(run / "cache", "val")
        n = len(enc.channels)
        x, taps = tr.images(), [tr.tap(i) for i in range(n)]
        var = tap_variances(run, n)
        dist = TapDistiller(enc.channels, [t.shape[1] for t in taps], var)
        opt = torch.optim.Adam(list(enc.parameters()) + list(dist.parameters()), lr=job.lr)
        gen = torch.Generator().manual_seed(job.seed)
        enc.train()
        for _ in range(job.steps):
            idx = torch.randint(x.shape[0], (min(job.batch, x.shape[0]),), generator=gen)
            loss = dist(enc(x[idx]), [t[idx] for t in taps])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        enc.eval()
        xv, tv = va.images(), [va.tap(i) for i in range(n)]
        accs = [NSRAccumulator(v) for v in var]
        with torch.no_grad():
            for s in range(0, xv.shape[0], 16):
                feats = enc(xv[s:s + 16])
                for i, a in enumerate(accs):
                    a.add(dist.adapters[i](feats[i]), tv[i][s:s + 16])
        vals = [a.value() for a in accs]
        return {"val_nsr": float(np.mean(vals)), **{f"val_nsr_tap{i}": v for i, v in enumerate(vals)}}


TASK = DistillTask()
