"""Blockwise knowledge distillation: train one block supernet, then score every choice it holds.

A job is one (block, op, act) supernet. It maps the teacher's previous tap (the image for the first
block, whose supernet includes the stem) to the teacher's tap of this block:

    teacher tap i-1 ──1×1 in-adapter──▶ elastic block (sampled choice) ──1×1 out-adapter──▶ Ŷ_i ≈ Y_i

Training samples a choice uniformly per step (kernel, expansion, depth, width, SE and the input
width the previous block may have): DNA/OFA-style uniform path sampling. Adapters only bridge
widths during BKD; ``assemble`` drops them.

Scoring: every choice is exported as a standalone sub-network, its batch-norm statistics are
recalibrated on ``calib_frames`` training frames (shared BN statistics are meaningless for one
choice, as DNA notes), and its NSR is measured on the held-out frames in eval mode.

Jobs are pure functions of their (picklable) description and seed: any executor gives the same
result. The result is written atomically to ``RUN/jobs/<job_id>.json`` (weights to
``RUN/blocks/<name>.safetensors`` first), which is what resume looks for.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from donna_nas.distill.cache import FeatureCache
from donna_nas.distill.elastic import ElasticBlock
from donna_nas.distill.nsr import NSRAccumulator, nsr
from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path, write_json_atomic
from donna_nas.space.space import BlockChoice, SearchSpace

__all__ = ["BKDJob", "BKDModel", "run_bkd_job", "supernet_name", "load_bkd_model", "quality_columns"]

quality_columns = ["block", "choice", "op", "kernel", "expand", "depth", "out_channels", "se", "act",
                   "nsr"]


def supernet_name(block: str, op: str, act: str) -> str:
    return f"{block}-{op}-{act}"


@dataclass(frozen=True)
class BKDJob:
    """One block supernet to distil (or one choice trained alone when ``fixed`` is a token)."""

    run_dir: str
    index: int
    block_name: str
    op: str
    act: str
    steps: int = 200
    batch: int = 8
    lr: float = 2e-3
    seed: int = 0
    calib_frames: int = 16
    eval_batch: int = 16
    threads: int = 1
    fixed: str | None = None
    tag: str = "bkd"

    @property
    def job_id(self) -> str:
        base = supernet_name(self.block_name, self.op, self.act)
        return f"{self.tag}-{base}" + (f"-{self.fixed}" if self.fixed else "")


class BKDModel(nn.Module):
    """Elastic block + the BKD-only width adapters."""

    def __init__(self, space: SearchSpace, index: int, op: str, act: str, teacher_in: int | None,
                 teacher_out: int):
        super().__init__()
        self.block = ElasticBlock(space, index, op, act)
        self.adapt_in = nn.Conv2d(teacher_in, self.block.cin_max, 1) if index > 0 else None
        self.adapt_out = nn.Conv2d(self.block.cout_max, teacher_out, 1)

    @torch.no_grad()
    def init_output_bias(self, target: torch.Tensor) -> None:
        """Start the out-adapter at the teacher tap's channel means, so that a fresh block already
        scores NSR about 1 (predicting the means) and BKD spends its steps on the signal.

        Adam moves a bias by at most about its lr per step. Teacher taps are post-ReLU features
        with channel means near 1, so from a zero bias a 60-step BKD (lr 2e-3) ends still short of
        the means: every early block of ``donna_depth_lite`` scored NSR above 1 that way, and
        block quality, the predictor and the stitched start point carried no signal."""
        self.adapt_out.bias.copy_(target.double().mean(dim=(0, 2, 3)).to(self.adapt_out.bias))

    def block_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt_in(x) if self.adapt_in is not None else x

    def head(self, y: torch.Tensor) -> torch.Tensor:
        c = y.shape[1]
        return nn.functional.conv2d(y, self.adapt_out.weight[:, :c], self.adapt_out.bias)

    def forward(self, x: torch.Tensor, choice: BlockChoice, cin: int | None = None) -> torch.Tensor:
        return self.head(self.block(self.block_input(x), choice, cin))

    @torch.no_grad()
    def scoring_inputs(self, calib: torch.Tensor, x: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """What a choice of this supernet is scored on: calibration frames and frames ``x`` (images
        for the first block, else the teacher's previous tap) through the in-adapter, and for the
        first block through the stem, whose batch norm is first recalibrated on ``calib``."""
        self.eval()
        calib, x = self.block_input(calib), self.block_input(x)
        stem = self.block.stem
        if stem is not None:  # the stem is fixed: recalibrate once, then feed its output
            from donna_nas.nn.builder import IMAGE_MEAN, IMAGE_STD

            _recalibrate(stem, (calib - IMAGE_MEAN) / IMAGE_STD, batch)
            calib, x = stem((calib - IMAGE_MEAN) / IMAGE_STD), stem((x - IMAGE_MEAN) / IMAGE_STD)
        return calib, x

    def scored_choice(self, choice: BlockChoice, cin: int, calib: torch.Tensor, batch: int) -> nn.Module:
        """``choice`` at input width ``cin`` as a standalone sub-network, its batch norm
        recalibrated on ``calib`` (from ``scoring_inputs``): shared statistics fit no single choice."""
        sub = self.block.export(choice, cin)
        _recalibrate(sub, calib[:, :cin], batch)
        return sub


def _choices(space: SearchSpace, job: BKDJob) -> list[BlockChoice]:
    block = space.blocks[job.index]
    if job.fixed:
        found = [c for c in block.all_choices() if c.token() == job.fixed]
        if not found:
            raise UserError(f"choice {job.fixed!r} is not in block {block.name} of {space.name!r}")
        return found
    return [c for c in block.all_choices() if c.op == job.op and c.act == job.act]


def _inputs(cache: FeatureCache, index: int) -> torch.Tensor:
    return cache.images() if index == 0 else cache.tap(index - 1)


def load_bkd_model(run_dir: Path, space: SearchSpace, index: int, op: str, act: str) -> BKDModel:
    """The distilled supernet of (block, op, act) from ``RUN/blocks/``."""
    run_dir = Path(run_dir)
    path = run_dir / "blocks" / f"{supernet_name(space.blocks[index].name, op, act)}.safetensors"
    if not path.is_file():
        raise UserError(f"{path}: block supernet not found; run `donna-nas build-supernet --resume` "
                        f"on {run_dir} to finish distillation")
    try:
        sd = load_file(str(path))
    except Exception as exc:
        raise UserError(f"{path}: corrupt block checkpoint ({type(exc).__name__}); delete it and "
                        f"its RUN/jobs entry, then rerun with --resume") from None
    meta = json.loads((run_dir / "teacher.json").read_text())
    ch = meta["channels"]
    model = BKDModel(space, index, op, act, ch[index - 1] if index > 0 else None, ch[index])
    model.load_state_dict(sd)
    return model


@torch.no_grad()
def _recalibrate(module: nn.Module, x: torch.Tensor, batch: int) -> None:
    """Reset batch-norm statistics and re-estimate them (cumulative average) on ``x``."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    module.train()
    for s in range(0, x.shape[0], batch):
        module(x[s:s + batch])
    for bn in bns:
        bn.momentum = 0.1
    module.eval()


def run_bkd_job(job: BKDJob) -> dict[str, Any]:
    """Train and score one supernet; writes and returns the job record."""
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        return _run(job)
    finally:
        torch.set_num_threads(prev_threads)


def _run(job: BKDJob) -> dict[str, Any]:
    t0 = time.time()
    run = Path(job.run_dir)
    space = SearchSpace.from_yaml(run / "space.yaml")
    train, val = FeatureCache(run / "cache", "train"), FeatureCache(run / "cache", "val")
    i = job.index
    x_tr, y_tr, var = _inputs(train, i), train.tap(i), train.variance(i)
    torch.manual_seed(job.seed)
    rng = random.Random(job.seed)
    gen = torch.Generator().manual_seed(job.seed)
    model = BKDModel(space, i, job.op, job.act, x_tr.shape[1] if i > 0 else None, y_tr.shape[1])
    model.init_output_bias(y_tr)
    choices = _choices(space, job)
    cins = model.block.cin_options
    opt = torch.optim.Adam(model.parameters(), lr=job.lr)
    model.train()
    losses = []
    for step in range(job.steps):
        idx = torch.randint(x_tr.shape[0], (min(job.batch, x_tr.shape[0]),), generator=gen)
        choice = choices[0] if job.fixed else rng.choice(choices)
        cin = max(cins) if job.fixed else rng.choice(cins)
        lr = job.lr * 0.5 * (1 + torch.cos(torch.tensor(step / max(job.steps, 1) * 3.14159265)).item())
        for g in opt.param_groups:
            g["lr"] = lr
        loss = nsr(model(x_tr[idx], choice, cin), y_tr[idx], var)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    train_s = time.time() - t0

    # ---- score every choice on held-out frames (max input width; BN recalibrated per choice)
    calib_x, val_x = model.scoring_inputs(x_tr[: job.calib_frames], _inputs(val, i), job.eval_batch)
    val_y = val.tap(i)
    cin = max(cins)
    rows = []
    for choice in choices:
        sub = model.scored_choice(choice, cin, calib_x, job.eval_batch)
        acc = NSRAccumulator(var)
        with torch.no_grad():
            for s in range(0, val_x.shape[0], job.eval_batch):
                acc.add(model.head(sub(val_x[s:s + job.eval_batch, :cin])), val_y[s:s + job.eval_batch])
        rows.append({"block": space.blocks[i].name, "choice": choice.token(), "op": choice.op,
                     "kernel": choice.kernel, "expand": choice.expand, "depth": choice.depth,
                     "out_channels": choice.out_channels, "se": choice.se, "act": choice.act,
                     "nsr": round(acc.value(), 6)})
    record = {"job_id": job.job_id, "job": asdict(job), "rows": rows,
              "train_loss_last": round(sum(losses[-10:]) / max(len(losses[-10:]), 1), 6),
              "train_s": round(train_s, 3), "score_s": round(time.time() - t0 - train_s, 3)}
    if not job.fixed:
        name = supernet_name(space.blocks[i].name, job.op, job.act)
        sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        with atomic_path(run / "blocks" / f"{name}.safetensors") as tmp:
            save_file(sd, str(tmp), metadata={"job": json.dumps(asdict(job))})
    write_json_atomic(run / "jobs" / f"{job.job_id}.json", record)
    return record
