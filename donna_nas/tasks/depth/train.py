"""Monodepth2 (+ optional X-Distill) training loop: resumable, NaN-guarded, DDP-capable.

Exact resume: the sample order of epoch e is a permutation drawn from a generator seeded with
(seed, e), the DataLoader gets its own generator (so building an iterator mid-epoch does not
consume the global RNG), and checkpoints carry weights, Adam moments and every RNG state. K steps
in one go and K/2 + resume K/2 therefore give identical weights on CPU.

DDP: started by ``torchrun``, each rank takes an interleaved slice of the epoch's permutation;
gradients are averaged by DistributedDataParallel (gloo on CPU). Rank 0 writes the run directory.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from donna_nas.data.epochs import start_epoch
from donna_nas.errors import UserError
from donna_nas.tasks.depth.backbones import make_encoder
from donna_nas.tasks.depth.geometry import transformation_from_parameters
from donna_nas.tasks.depth.losses import Monodepth2Loss
from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet, PoseNet
from donna_nas.tasks.depth.run import (
    DepthConfig,
    checkpoint_path,
    load_checkpoint,
    load_config,
    resolve_model_names,
    save_checkpoint,
    save_config,
    save_model,
)

__all__ = ["TrainingDiverged", "DepthTrainer", "build_depth_net", "train_depth", "epoch_batches", "warm_start"]


class TrainingDiverged(UserError):
    """Loss became NaN/Inf; the last good checkpoint is kept."""


def build_depth_net(cfg: DepthConfig) -> DepthNet:
    enc = make_encoder(cfg.backbone, cfg.space, cfg.weights, bridge=cfg.bridge)
    return DepthNet(enc, DepthDecoder(enc.channels, tuple(cfg.scales), cfg.act))


class DepthTrainer(nn.Module):
    """Everything trainable in one module (depth net, pose net, optional transfer net); forward → loss."""

    def __init__(self, cfg: DepthConfig, teacher: Any | None = None):
        super().__init__()
        self.cfg = cfg
        self.depth = build_depth_net(cfg)
        pose_enc = None
        if cfg.pose_weights:
            from donna_nas.nn.resnet import load_torchvision_state_dict, resnet18

            pose_enc = resnet18(num_input_images=2)
            load_torchvision_state_dict(pose_enc, cfg.pose_weights)
        self.pose = PoseNet(pose_enc)
        self.loss_fn = Monodepth2Loss(
            cfg.height, cfg.width, tuple(cfg.frame_ids), tuple(cfg.scales),
            cfg.min_depth, cfg.max_depth, cfg.smoothness, cfg.automask, cfg.warp,
        )
        # the distillation teacher is held outside the module tree: it is frozen, and neither its
        # weights nor optimizer state belong in this run's checkpoints
        self._kd_teacher: list[nn.Module] = []
        if cfg.distill_from:
            from donna_nas.tasks.depth.run import load_model

            teacher_net, _ = load_model(cfg.distill_from)
            for p in teacher_net.parameters():
                p.requires_grad_(False)
            self._kd_teacher.append(teacher_net.eval())
        self.transfer: nn.Module | None = None
        if cfg.xdistill:
            from donna_nas.tasks.depth.xdistill import TransferNet

            if teacher is None:
                raise ValueError("X-Distill needs a teacher")
            self.transfer = TransferNet(teacher.num_groups)

    def networks_autocast(self) -> torch.autocast:
        """The precision the depth and pose nets run in (``DepthConfig.mixed_precision``). Their
        outputs are cast back to float32 before the geometry and the loss: a rotation built in
        bfloat16 (3 significant digits) would misplace every warped pixel."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.mixed_precision == "bf16")

    def pose_parameters(self, images_aug: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """The pose net's (axis-angle, translation) per source frame, in the caller's precision;
        the pose net always sees a pair in temporal order, average-pooled by
        ``DepthConfig.pose_downsample``."""
        factor = self.cfg.pose_downsample
        if factor > 1:
            images_aug = F.avg_pool2d(images_aug.flatten(0, 1), factor).unflatten(0, images_aug.shape[:2])
        i0 = images_aug[:, 0]
        pairs = {f: (images_aug[:, j], i0) if f < 0 else (i0, images_aug[:, j])
                 for j, f in enumerate(self.cfg.frame_ids[1:], start=1)}
        if not self.cfg.pose_batch_pairs:  # Monodepth2: one pose-net call per pair
            return {f: self.pose(a, b) for f, (a, b) in pairs.items()}
        # one call on every pair stacked along the batch: a third fewer, twice-as-wide convolutions
        # (DepthConfig.pose_batch_pairs says what changes)
        axisangle, translation = self.pose(torch.cat([a for a, _ in pairs.values()]),
                                           torch.cat([b for _, b in pairs.values()]))
        n = i0.shape[0]
        return dict(zip(pairs, zip(axisangle.split(n), translation.split(n))))

    @staticmethod
    def transforms(params: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, torch.Tensor]:
        """Target→source 4x4 transforms from ``pose_parameters``, built in float32."""
        return {f: transformation_from_parameters(aa.float(), t.float(), invert=f < 0) for f, (aa, t) in params.items()}

    def poses(self, images_aug: torch.Tensor) -> dict[int, torch.Tensor]:
        """Target→source transforms."""
        with self.networks_autocast():
            params = self.pose_parameters(images_aug)
        return self.transforms(params)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, aug = batch["images"], batch["images_aug"]
        # one autocast region for both nets: autocast casts each weight once per region (the pose
        # net runs once per frame pair with pose_batch_pairs off)
        with self.networks_autocast():
            disps = self.depth.multiscale(aug[:, 0])
            params = self.pose_parameters(aug)
        disps = [d if d is None else d.float() for d in disps]  # no copy in float32
        poses = self.transforms(params)
        loss, info = self.loss_fn(disps, images, batch["K"], batch["inv_K"], poses)
        info["photometric"] = loss.detach()
        if self._kd_teacher:
            kd = self.distillation(aug[:, 0], disps)
            info["distill"] = kd.detach()
            loss = loss + self.cfg.distill_weight * kd
        if self.transfer is not None:
            from donna_nas.tasks.depth.xdistill import xdistill_loss

            read = self.cfg.scales if self.cfg.xdistill_scales is None else self.cfg.xdistill_scales
            seg = xdistill_loss(self.transfer, [disps[s] for s in read], batch["groups"])
            info["xdistill"] = seg.detach()
            loss = loss + self.cfg.xdistill_weight * seg
        return loss, info

    @property
    def distill_teacher(self) -> nn.Module | None:
        """The frozen ``distill_from`` depth model (None without output distillation)."""
        return self._kd_teacher[0] if self._kd_teacher else None

    def distillation(self, image: torch.Tensor, disps: list[torch.Tensor]) -> torch.Tensor:
        """``output_kd_loss`` of the student's disparity scales ``disps`` on ``image`` against
        the ``distill_from`` teacher's on the same image (unweighted)."""
        from donna_nas.tasks.depth.losses import output_kd_loss

        if not self._kd_teacher:
            raise ValueError("distillation needs DepthConfig.distill_from")
        with torch.no_grad():
            target = self._kd_teacher[0].multiscale(image)
        return output_kd_loss(disps, target, self.cfg.min_depth, self.cfg.max_depth)


def warm_start(model: DepthTrainer, spec: str) -> str:
    """Load ``spec``'s weights into ``model`` (``DepthConfig.init_from``); returns what was loaded.

    A depth run directory with a checkpoint gives its depth *and* pose nets, so continued
    self-supervised training does not restart ego-motion from scratch; a finished run without a
    checkpoint, or a shipped model name, gives the depth net alone. The optimizer starts fresh.
    """
    from donna_nas.tasks.depth.run import has_checkpoint, load_model_weights, read_checkpoint

    path = Path(spec)
    if path.is_dir() and has_checkpoint(path):
        tensors, _, ck = read_checkpoint(path)  # a torn last checkpoint falls back to the previous one
        parts = {"depth": model.depth, "pose": model.pose}
        for name, module in parts.items():
            sd = {k[len(f"model.{name}."):]: v for k, v in tensors.items() if k.startswith(f"model.{name}.")}
            try:
                module.load_state_dict(sd)
            except RuntimeError as exc:
                raise UserError(f"{ck}: its {name} net does not match this run's --backbone {model.cfg.backbone} "
                                f"({str(exc).splitlines()[0]}); warm-start from a run of the same architecture") from None
        return f"{ck} (depth and pose nets)"
    sd, source = load_model_weights(spec)
    try:
        model.depth.load_state_dict(sd)
    except RuntimeError as exc:
        raise UserError(f"{source}: does not match this run's --backbone {model.cfg.backbone} "
                        f"({str(exc).splitlines()[0]}); warm-start from a model of the same architecture") from None
    return f"{source} (depth net)"


def epoch_batches(n: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's batches of epoch ``epoch``: a seeded permutation, interleaved over ranks, full batches only."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    per_rank = (n // (batch * world)) * batch
    mine = perm[rank::world][:per_rank]
    return [mine[i : i + batch] for i in range(0, per_rank, batch)]


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
        return True
    return False


def make_train_dataset(cfg: DepthConfig, semantics: bool) -> Dataset:
    from donna_nas.data.kitti import KittiRawDataset

    split = cfg.train_split or str(Path(cfg.data) / "splits" / "train_files.txt")
    if not Path(split).is_file():
        raise UserError(f"{split}: training split file not found; pass --data with a splits/ folder (see `donna-nas data synth`)")
    folder = cfg.seg_teacher if cfg.xdistill and cfg.seg_teacher and Path(cfg.seg_teacher).is_dir() else None
    ds = KittiRawDataset(
        cfg.data, split, size=(cfg.height, cfg.width), frame_ids=tuple(cfg.frame_ids),
        train=True, semantics=semantics and folder is None, stereo=False, seed=cfg.seed,
    )
    if folder is not None:
        from donna_nas.tasks.depth.xdistill import LabelFolder

        return LabelFolder(ds, folder)
    return ds


def make_optimizer(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel (one pass over all parameters instead of ~5 elementwise ops per
    tensor: about a tenth of a CPU step at 64x192); its state is the same as plain Adam's, so
    checkpoints stay interchangeable."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def train_depth(
    cfg: DepthConfig | None,
    run: str | Path,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    dataset: Dataset | None = None,
    teacher: Any | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Train into ``run``; returns the final state (step, losses, config, trainer module).

    With ``resume`` the run's stored config is used; ``overrides`` (e.g. epochs, max_steps) may extend
    it, and so do ``cfg.epochs``/``cfg.max_steps`` when a ``cfg`` is passed.
    """
    run = Path(run)
    started_dist = _maybe_init_distributed()
    rank, world = _dist_info()
    try:
        if resume:
            saved = load_config(run)
            # the stored config wins; only the length of training may be changed
            saved.max_steps = None  # a stop-early limit applies to one invocation only
            if cfg is not None:
                saved.epochs, saved.max_steps = cfg.epochs, cfg.max_steps
            for k, v in (overrides or {}).items():
                if k not in ("epochs", "max_steps"):
                    raise UserError(f"--resume continues {run} with its config.yaml; only --epochs/--max-steps may change, not {k}")
                setattr(saved, k, v)
            cfg = saved
        elif cfg is None:
            raise ValueError("cfg is required unless resuming")
        else:
            if checkpoint_path(run).exists():
                raise UserError(f"{run}: already holds a checkpoint; pass --resume to continue it or choose another --out")
            resolve_model_names(cfg)
        cfg.validate()
        _seed_all(cfg.seed)
        if teacher is None and cfg.xdistill:
            from donna_nas.tasks.depth.xdistill import make_teacher

            teacher = make_teacher(cfg)
        if dataset is None:
            dataset = make_train_dataset(cfg, semantics=bool(teacher is not None and teacher.needs_semantics))
        model = DepthTrainer(cfg, teacher)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, cfg.lr)
        step, losses = 0, []
        if resume:
            st = load_checkpoint(run, model, optimizer)
            step, losses = int(st["step"]), list(st.get("losses", []))
            if log and rank == 0:
                log(f"resuming {run} at step {step}")
        else:
            if cfg.init_from:
                loaded = warm_start(model, cfg.init_from)
                if log and rank == 0:
                    log(f"warm start from {loaded}")
            if rank == 0:
                run.mkdir(parents=True, exist_ok=True)
                save_config(run, cfg)
        ddp_model: nn.Module = model
        if world > 1:
            ddp_model = nn.parallel.DistributedDataParallel(model)

        n_batches = len(epoch_batches(len(dataset), cfg.batch, cfg.seed, 0, rank, world))
        if n_batches == 0:
            raise UserError(f"{cfg.data}: {len(dataset)} training samples are fewer than one batch of {cfg.batch}·{world}")
        total = cfg.epochs * n_batches
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        loader_gen = torch.Generator().manual_seed(cfg.seed)
        last_saved = step if resume else None
        t0, s0 = time.time(), step

        prog = None
        if progress and rank == 0:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            prog = Progress(
                TextColumn("[bold]depth[/] ep {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
            )
            prog.start()
            task = prog.add_task("train", total=total, completed=step, epoch=step // n_batches, loss="-")
        try:
            model.train()
            while step < total:
                epoch, within = divmod(step, n_batches)
                start_epoch(dataset, epoch)
                lr = cfg.lr * cfg.lr_gamma ** (epoch // max(cfg.lr_step, 1))
                for g in optimizer.param_groups:
                    g["lr"] = lr
                batches = epoch_batches(len(dataset), cfg.batch, cfg.seed, epoch, rank, world)[within:]
                loader = DataLoader(
                    dataset, batch_sampler=batches, num_workers=cfg.workers, generator=loader_gen,
                    persistent_workers=False,
                )
                for batch in loader:
                    if step >= total:
                        break
                    if teacher is not None:
                        with torch.no_grad():
                            batch["groups"] = teacher(batch)
                    loss, info = ddp_model(batch)
                    bad = torch.tensor(float(not torch.isfinite(loss).item()))
                    if world > 1:
                        dist.all_reduce(bad)
                    if bad.item() > 0:
                        where = f"step {step} (epoch {epoch})"
                        kept = (
                            f"the last good checkpoint {checkpoint_path(run)} (step {last_saved}) is kept"
                            if last_saved is not None
                            else "no checkpoint was written yet"
                        )
                        raise TrainingDiverged(
                            f"{run}: loss became {loss.item()} at {where}; {kept}; lower --lr or check the data, then --resume"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    losses.append(round(float(loss.item()), 6))
                    if prog is not None:
                        prog.update(task, completed=step, epoch=epoch, loss=f"{loss.item():.4f}")
                    elif log and rank == 0 and step % 100 == 0:  # a log file gets a plain line now and then
                        rate = (time.time() - t0) / max(step - s0, 1)
                        log(f"step {step}/{total} epoch {epoch} loss {loss.item():.4f} "
                            f"({rate:.2f} s/step, {rate * (total - step) / 60:.0f} min left)")
                    if step % cfg.checkpoint_every == 0 or step == total:
                        if rank == 0:
                            save_checkpoint(run, model, optimizer, {"step": step, "epoch": epoch, "lr": lr, "losses": losses})
                        last_saved = step
        finally:
            if prog is not None:
                prog.stop()
        if rank == 0:
            done = cfg.max_steps is None or step >= cfg.epochs * n_batches
            save_model(run, model.depth, cfg, {"steps": step, "complete": bool(done)})
            dt = time.time() - t0
            if log:
                ips = (step - s0) * cfg.batch * world / max(dt, 1e-9)
                log(f"trained {step - s0} steps in {dt:.1f}s ({ips:.1f} images/s); last loss {losses[-1] if losses else float('nan'):.4f}")
        return {"step": step, "losses": losses, "config": asdict(cfg), "model": model}
    finally:
        if started_dist:
            dist.destroy_process_group()
