"""Short finetunes of architectures assembled from distilled blocks: the predictor's targets.

Two tasks:

* ``depth``: Monodepth2 self-supervision (the depth task's ``DepthTrainer``) plus NSR distillation
  of the encoder taps towards the teacher's taps (weight ``distill_weight``, 1×1 adapters); the
  target is Sq Rel (and abs_rel) on the data's validation split, Eigen protocol with median scaling.
* ``distill``: label-free proxy (tests, quick looks): finetune the encoder to the teacher's taps on
  the cached frames; the target is the mean held-out NSR over the taps. Cheap, no decoder.

Jobs are picklable and seeded; each writes ``RUN/jobs/ft-<arch hash>.json`` atomically.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.runtime.io import write_json_atomic

__all__ = ["FinetuneJob", "run_finetune_job", "TASKS"]

TASKS = ("depth", "classify", "distill")  # any task of donna_nas.tasks.base.available_tasks(), or distill


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

    @property
    def job_id(self) -> str:
        import hashlib

        return "ft-" + hashlib.sha1(self.arch.encode()).hexdigest()[:12]


def run_finetune_job(job: FinetuneJob) -> dict[str, Any]:
    prev = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        t0 = time.time()
        torch.manual_seed(job.seed)
        random.seed(job.seed)
        np.random.seed(job.seed)
        if job.task == "distill":
            metrics = _distill_task(job)
        else:  # depth, classify, ...: the task module's own short finetune
            from donna_nas.tasks.base import get_task

            metrics = get_task(job.task).predictor_finetune(job)
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


def _variances(run: Path, n: int) -> list[torch.Tensor]:
    from donna_nas.distill.cache import FeatureCache

    c = FeatureCache(run / "cache", "train")
    return [c.variance(i) for i in range(n)]


def _distill_task(job: FinetuneJob) -> dict[str, float]:
    from donna_nas.distill.assemble import assemble
    from donna_nas.distill.cache import FeatureCache
    from donna_nas.distill.nsr import NSRAccumulator

    run = Path(job.run_dir)
    enc = assemble(run, job.arch)
    tr, va = FeatureCache(run / "cache", "train"), FeatureCache(run / "cache", "val")
    n = len(enc.channels)
    x, taps = tr.images(), [tr.tap(i) for i in range(n)]
    var = _variances(run, n)
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


def _depth_task(job: FinetuneJob) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from donna_nas.data.gt import load_gt_depths
    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.distill.assemble import assemble
    from donna_nas.distill.teacher import load_teacher
    from donna_nas.tasks.depth.evaluate import predict_disparities
    from donna_nas.tasks.depth.metrics import evaluate_disparities
    from donna_nas.tasks.depth.networks import DepthDecoder, PoseNet
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.train import DepthTrainer, epoch_batches, make_train_dataset

    run = Path(job.run_dir)
    if not job.data:
        raise UserError("--task depth needs --data (a KITTI-layout folder with splits/)")
    cfg = DepthConfig(data=job.data, backbone=job.arch, space=str(run / "space.yaml"),
                      height=job.height, width=job.width, batch=job.batch, lr=job.lr, seed=job.seed,
                      epochs=10_000, max_steps=job.steps, workers=0, act="elu")
    cfg.validate()
    trainer = DepthTrainer(cfg)
    # common random numbers: every architecture starts from the same pose net and (for equal tap
    # widths) the same decoder, and sees the same batches, so metric differences come from the
    # encoders rather than from initialisation noise
    torch.manual_seed(job.seed + 1)
    trainer.pose = PoseNet()
    torch.manual_seed(job.seed + 2)
    trainer.depth.decoder = DepthDecoder(trainer.depth.encoder.channels, tuple(cfg.scales), cfg.act)
    enc = assemble(run, job.arch, input_size=(job.height, job.width))
    trainer.depth.encoder.load_state_dict(enc.state_dict())
    tinfo = json.loads((run / "teacher.json").read_text())
    teacher = None
    dist = None
    if job.distill_weight > 0:
        teacher, _ = load_teacher(tinfo["spec"], tinfo.get("weights"))
        dist = TapDistiller(enc.channels, tinfo["channels"], _variances(run, len(enc.channels)))
        trainer.add_module("tap_distiller", dist)
    ds = make_train_dataset(cfg, semantics=False)
    opt = torch.optim.Adam([p for p in trainer.parameters() if p.requires_grad], lr=cfg.lr)
    trainer.train()
    step, epoch = 0, 0
    while step < job.steps:
        batches = epoch_batches(len(ds), cfg.batch, cfg.seed, epoch)
        if not batches:
            raise UserError(f"{job.data}: {len(ds)} training samples are fewer than one batch of {cfg.batch}")
        for batch in DataLoader(ds, batch_sampler=batches, num_workers=0):
            if step >= job.steps:
                break
            loss, _ = trainer(batch)
            if dist is not None:
                x = batch["images"][:, 0]
                loss = loss + job.distill_weight * dist(trainer.depth.encoder(x), teacher(x))
            if not torch.isfinite(loss):
                raise UserError(f"finetune of {job.arch}: loss became {loss.item()} at step {step}; lower the finetune lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
    val_split = Path(job.data) / "splits" / "val_files.txt"
    vds = KittiRawDataset(job.data, str(val_split), size=(job.height, job.width), frame_ids=(0,),
                          train=False)
    gts, _ = load_gt_depths(run / "cache" / "val_gt.npz")
    if job.val_frames:
        vds = torch.utils.data.Subset(vds, range(min(job.val_frames, len(vds))))
        gts = gts[: len(vds)]
    disps, _ = predict_disparities(trainer.depth, vds, cfg.min_depth, cfg.max_depth)
    metrics, _ = evaluate_disparities(disps, gts)
    return {k: float(v) for k, v in metrics.items()}
