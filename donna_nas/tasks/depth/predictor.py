"""The depth task's predictor finetune: a short finetune of an architecture assembled from its
distilled blocks; its Sq Rel on the validation split is the accuracy predictor's target.

Objectives (``FinetuneJob.objective``):

* ``kd``: DONNA's distillation finetune: the student's four disparity scales regress the teacher
  depth model's (L1 of log disparity), no pose net, no photometric loss. The lr decays to zero
  along a cosine over the job's steps (every objective). It is cheap; how much seed noise its
  targets carry (the noise floor of any predictor fitted on them) is measured by
  ``experiments/predictor_rank.py``.
* ``selfsup``: Monodepth2's self-supervised loss (the earlier default; noisy at short budgets).
* ``kd+selfsup``: both.

Tap NSR distillation (``distill_weight`` > 0) can be added to any of them.

Batch-norm statistics (``FinetuneJob.bn_recalibrate`` frames, 0 = off): a 100-step finetune at batch
4 ends with running statistics that are an EMA over its last few colour-jittered batches, so they
differ from seed to seed; re-estimated on the run's cached, un-augmented training frames they do
not. Measured (``experiments/predictor_rank.py --bn-recalibrate``, docs/supernet.md), that does not
lower the targets' noise floor (noise / signal 1.27 against 1.13), so it is off by default and kept
for such studies.

The decoder (``FinetuneJob.decoder``): ``stitched`` starts from the teacher depth model's decoder
with the BKD out-adapters folded in (``donna_nas.tasks.depth.stitch``), so the short finetune
corrects a whole network; ``random`` draws a fresh one, which a 100-step finetune cannot train
to the same point from seed to seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from donna_nas.errors import UserError
from donna_nas.predictor.finetune import FinetuneJob, TapDistiller, tap_variances

__all__ = ["export_val_gt", "predictor_finetune"]


def export_val_gt(run: Path, data: str, split: str = "val") -> Path:
    """Velodyne ground truth of a split (the validation split unless told), once per run
    (``RUN/cache/SPLIT_gt.npz``); returns its path."""
    out = run / "cache" / f"{split}_gt.npz"
    if out.is_file():
        return out
    from donna_nas.data.gt import export_gt

    listing = Path(data) / "splits" / f"{split}_files.txt"
    if not listing.is_file():
        raise UserError(f"{listing}: no such split file; the finetune's eval split {split!r} must be one of "
                        f"{data}/splits/*_files.txt")
    export_gt(data, listing, out=out, progress=False)
    return out


def predictor_finetune(job: FinetuneJob) -> dict[str, float]:
    """Finetune ``job.arch`` from its distilled blocks (and, with ``job.decoder`` stitched, the
    teacher's decoder) with ``job.objective`` (module docstring),
    plus NSR distillation of the encoder taps (weight ``distill_weight``, 1×1 adapters), for
    ``job.steps`` steps; Sq Rel, abs_rel, ... on the data's validation split (Eigen protocol,
    median scaling)."""
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
    objective = job.objective
    if objective not in ("selfsup", "kd", "kd+selfsup"):
        raise UserError(f"finetune objective {objective!r}: use selfsup, kd or kd+selfsup")
    selfsup = objective in ("selfsup", "kd+selfsup")
    tinfo = json.loads((run / "teacher.json").read_text())
    # the output-distillation teacher: the depth model the supernet was distilled from
    distill_from = (tinfo.get("shipped") or tinfo.get("run") or tinfo.get("spec")) if objective != "selfsup" else None
    cfg = DepthConfig(data=job.data, backbone=job.arch, space=str(run / "space.yaml"),
                      height=job.height, width=job.width, batch=job.batch, lr=job.lr, seed=job.seed,
                      epochs=10_000, max_steps=job.steps, workers=0, act="elu", distill_from=distill_from)
    cfg.validate()
    trainer = DepthTrainer(cfg)
    # common random numbers: every architecture starts from the same pose net and (for equal tap
    # widths, random decoders) the same decoder, and sees the same batches, so metric differences
    # come from the encoders rather than from initialisation noise
    torch.manual_seed(job.seed + 1)
    trainer.pose = PoseNet()
    if job.decoder not in ("random", "stitched"):
        raise UserError(f"finetune decoder {job.decoder!r}: use random or stitched")
    # drawn for a stitched start too, so both starts leave the global RNG in the same state
    torch.manual_seed(job.seed + 2)
    trainer.depth.decoder = DepthDecoder(trainer.depth.encoder.channels, tuple(cfg.scales), cfg.act)
    enc = assemble(run, job.arch, input_size=(job.height, job.width), bridge=job.bridge)
    if job.decoder == "stitched":  # the teacher's decoder through the BKD adapters (tasks/depth/stitch.py)
        from donna_nas.distill.assemble import load_run_space
        from donna_nas.tasks.depth.run import load_model
        from donna_nas.tasks.depth.stitch import stitched_decoder

        # the output-distillation teacher is that depth model, already loaded by the trainer
        teacher_net = trainer.distill_teacher or load_model(tinfo.get("shipped") or tinfo.get("run")
                                                            or tinfo.get("spec"))[0]
        arch = load_run_space(run).decode(job.arch)
        trainer.depth.decoder = stitched_decoder(run, arch, teacher_net.decoder)
    trainer.depth.encoder.load_state_dict(enc.state_dict())
    teacher = None
    dist = None
    if job.distill_weight > 0:
        teacher, _ = load_teacher(tinfo["spec"], tinfo.get("weights"))
        dist = TapDistiller(enc.channels, tinfo["channels"], tap_variances(run, len(enc.channels)))
        trainer.add_module("tap_distiller", dist)
    if selfsup:
        ds = make_train_dataset(cfg, semantics=False)
    else:  # distillation alone needs the target frame only
        ds = KittiRawDataset(cfg.data, str(Path(cfg.data) / "splits" / "train_files.txt"), size=(cfg.height, cfg.width),
                             frame_ids=(0,), train=True, semantics=False, stereo=False, seed=cfg.seed)
    opt = torch.optim.Adam([p for p in trainer.parameters() if p.requires_grad], lr=cfg.lr)
    # cosine decay to zero: the last iterate is then an average-like point rather than one noisy
    # step of a constant-lr walk, so the target differs less between seeds (the noise floor)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, job.steps) / max(job.steps, 1))))
    trainer.train()
    step, epoch = 0, 0
    trace: list[float] = []
    while step < job.steps:
        batches = epoch_batches(len(ds), cfg.batch, cfg.seed, epoch)
        if not batches:
            raise UserError(f"{job.data}: {len(ds)} training samples are fewer than one batch of {cfg.batch}")
        for batch in DataLoader(ds, batch_sampler=batches, num_workers=0):
            if step >= job.steps:
                break
            feats = None
            if selfsup:  # with distill_from set, the trainer's loss includes the output distillation
                loss = trainer(batch)[0]
            else:  # distillation alone: no pose net, no photometric loss
                x = batch["images_aug"][:, 0]
                feats = trainer.depth.encoder(x)
                loss = trainer.distillation(x, trainer.depth.decoder(feats))
            if dist is not None:  # with output distillation the taps, too, see the teacher's (augmented) frame
                x = batch["images"][:, 0] if objective == "selfsup" else batch["images_aug"][:, 0]
                feats = feats if feats is not None else trainer.depth.encoder(x)
                loss = loss + job.distill_weight * dist(feats, teacher(x))
            if not torch.isfinite(loss):
                raise UserError(f"finetune of {job.arch}: loss became {loss.item()} at step {step}; lower the finetune lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            trace.append(float(loss.item()))
            step += 1
        epoch += 1

    def score(split: str, gt_path: Path, limit: int = 0) -> dict[str, float]:
        """Eigen metrics of the finetuned depth net on ``split`` (its first ``limit`` frames if set)."""
        scored = KittiRawDataset(job.data, str(Path(job.data) / "splits" / f"{split}_files.txt"),
                                 size=(job.height, job.width), frame_ids=(0,), train=False)
        gts, _ = load_gt_depths(gt_path)
        if limit:
            scored = torch.utils.data.Subset(scored, range(min(limit, len(scored))))
            gts = gts[: len(scored)]
        disps, _ = predict_disparities(trainer.depth, scored, cfg.min_depth, cfg.max_depth)
        return {k2: float(v) for k2, v in evaluate_disparities(disps, gts)[0].items()}

    running = None
    if job.bn_recalibrate:  # the finetune's own statistics, scored for comparison (FinetuneJob.bn_recalibrate)
        from donna_nas.distill.assemble import recalibrate_on_cache

        running = score("val", run / "cache" / "val_gt.npz", job.val_frames)
        if not recalibrate_on_cache(trainer.depth.encoder, run, job.bn_recalibrate):
            raise UserError(f"{run}/cache/train/images.npy: missing, so batch norm cannot be recalibrated; "
                            "rebuild the run's cache or drop bn_recalibrate")
    metrics = score("val", run / "cache" / "val_gt.npz", job.val_frames)
    if running is not None:
        metrics.update({f"bn_running/{k2}": v for k2, v in running.items()})
    for split in job.eval_splits:  # scored beside the target, to study its noise (FinetuneJob.eval_splits)
        metrics.update({f"{split}/{k2}": v for k2, v in score(split, export_val_gt(run, job.data, split)).items()})
    k = max(1, min(5, len(trace) // 4))  # the objective at the start and end: did the finetune converge?
    return {**metrics, "loss_first": float(sum(trace[:k]) / k), "loss_last": float(sum(trace[-k:]) / k)}
