"""Classifier training: label-smoothed CE + KD from a teacher's logits, AdamW, cosine schedule.

Run directory (``RUN/``)::

    config.yaml                    resolved settings (what --resume continues with)
    checkpoints/last.safetensors   weights, optimizer moments, RNG, step (the depth task's format)
    model.safetensors, model.json  the trained classifier and how to rebuild it
    metrics.json, report.md, plots/confusion.png, export/   written by evaluate / export

Batches are drawn from a per-epoch permutation and augmented (random shifts) with generators
seeded by (seed, epoch) and (seed, step), so a resumed run sees the same batches as an
uninterrupted one. Images are small and held in memory: the classification data this toolkit
targets (a few thousand images) fits easily.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from donna_nas.errors import UserError
from donna_nas.nn.encoders import is_supernet_run
from donna_nas.runtime.io import atomic_path, write_json_atomic, write_text_atomic
from donna_nas.tasks.classify.losses import classification_loss
from donna_nas.tasks.classify.model import ClassifierNet

__all__ = ["ClassifyConfig", "build_classifier", "load_classifier", "train_classifier", "cosine_lr",
           "is_supernet_run", "predict_logits"]


@dataclass
class ClassifyConfig:
    """Every setting of a classification run."""

    data: str = ""
    backbone: str = "resnet18"  # resnet18 | resnet50 | an architecture string (with space)
    space: str | None = None  # space YAML / shipped name, or a build-supernet run (distilled init)
    weights: str | None = None  # torchvision-format ResNet file
    teacher: str | None = None  # a classifier run directory (KD from its logits)
    height: int = 32
    width: int = 32
    epochs: int = 10
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    label_smoothing: float = 0.1
    kd_weight: float = 0.5
    kd_temperature: float = 4.0
    shift: int = 2  # random translation in pixels (augmentation); 0 = none
    seed: int = 0
    checkpoint_every: int = 200
    max_steps: int | None = None

    def validate(self) -> None:
        if self.height < 8 or self.width < 8:
            raise UserError(f"--size {self.height}x{self.width}: use at least 8x8")
        if self.epochs < 1 or self.batch < 1:
            raise UserError("--epochs and --batch must be at least 1")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise UserError(f"--kd-weight {self.kd_weight}: must lie in [0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"--label-smoothing {self.label_smoothing}: must lie in [0, 1)")
        if self.kd_temperature <= 0:
            raise UserError(f"--kd-temperature {self.kd_temperature}: must be positive")


def resolve_backbone(backbone: str, space: str | None) -> tuple[str, str | None, Path | None]:
    """(architecture or ResNet name, space spec, build-supernet run or None): see
    ``donna_nas.nn.encoders.resolve_encoder``. A build-supernet run is given either as
    ``backbone`` (its ``selected.json`` architecture) or as ``space`` with an architecture string."""
    from donna_nas.nn.encoders import resolve_encoder

    es = resolve_encoder(backbone, space)
    if es.is_resnet:
        return backbone, space, None
    return es.name, es.space, es.run


def make_classify_encoder(backbone: str, space: str | None, weights: str | None,
                          size: tuple[int, int], distilled: bool = True) -> nn.Module:
    """The encoder; from a build-supernet run with the architecture's blockwise-distilled weights
    when ``distilled`` (DONNA's finetune start point)."""
    from donna_nas.nn.encoders import create_encoder

    return create_encoder(backbone, space, weights, init=distilled, input_size=size)


def build_classifier(backbone: str, space: str | None, num_classes: int) -> ClassifierNet:
    """An untrained classifier of the given encoder (weights loaded by the caller)."""
    enc = make_classify_encoder(backbone, space, None, (32, 32), distilled=False)
    return ClassifierNet(enc, num_classes)


def load_classifier(run: str | Path) -> tuple[ClassifierNet, dict[str, Any]]:
    """The trained classifier of a finished run and its ``model.json``."""
    run = Path(run)
    mj, mw = run / "model.json", run / "model.safetensors"
    if not mj.is_file() or not mw.is_file():
        raise UserError(f"{run}: not a finished classification run (needs model.json and "
                        "model.safetensors; finish it with `finetune --task classify --resume`)")
    info = json.loads(mj.read_text())
    if info.get("task") != "classify":
        raise UserError(f"{mj}: not a classifier (task {info.get('task', 'depth')!r}); "
                        "a classification teacher must come from train-classifier-teacher or finetune --task classify")
    net = build_classifier(info["backbone"], info.get("space"), int(info["num_classes"]))
    try:
        net.load_state_dict(load_file(str(mw)))
    except Exception as exc:  # truncated file or wrong architecture
        raise UserError(f"{mw}: cannot load the classifier ({type(exc).__name__}: {str(exc)[:200]})") from None
    return net.eval(), info


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))


def shift_batch(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``shift`` pixels (zero fill)."""
    if shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    off = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack([pad[i, :, off[i, 0]:off[i, 0] + h, off[i, 1]:off[i, 1] + w] for i in range(n)])


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[s:s + batch]) for s in range(0, x.shape[0], batch)])


def _save_config(run: Path, cfg: ClassifyConfig) -> None:
    write_text_atomic(run / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))


def _load_config(run: Path) -> ClassifyConfig:
    path = run / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run} a classification run directory?")
    from donna_nas.runtime.config_file import read_config_mapping

    return ClassifyConfig(**read_config_mapping(path, ClassifyConfig))


def train_classifier(cfg: ClassifyConfig | None, out: str | Path, resume: bool = False,
                     overrides: dict[str, Any] | None = None, progress: bool = True,
                     data: tuple[torch.Tensor, torch.Tensor, list[str]] | None = None) -> dict[str, Any]:
    """Train (or continue) a classifier into ``out``; returns {"step", "seconds", "last_loss"}.

    ``data``: preloaded (images, labels, classes) of the training split instead of reading
    ``cfg.data`` (the predictor finetunes pass them to avoid re-reading PNGs).
    """
    from donna_nas.tasks.depth.run import checkpoint_path, load_checkpoint, save_checkpoint

    run = Path(out)
    if resume:
        cfg = _load_config(run)
        for k, v in (overrides or {}).items():
            setattr(cfg, k, v)
    else:
        if cfg is None:
            raise UserError("a configuration is needed to start a run")
        if (run / "config.yaml").is_file():
            raise UserError(f"{run}: already holds a run (config.yaml); pass --resume to continue it or choose another --out")
    cfg.validate()
    size = (cfg.height, cfg.width)
    x, y, classes = data if data is not None else _train_split(cfg, size)
    n_cls = len(classes)
    if n_cls < 2:
        raise UserError(f"{cfg.data}: found {n_cls} class; classification needs at least 2 classes")
    torch.manual_seed(cfg.seed)
    has_ckpt = resume and checkpoint_path(run).is_file()
    enc = make_classify_encoder(cfg.backbone, cfg.space, cfg.weights, size, distilled=not has_ckpt)
    model = ClassifierNet(enc, n_cls)
    teacher = None
    if cfg.teacher and cfg.kd_weight > 0:
        teacher, tinfo = load_classifier(cfg.teacher)
        if int(tinfo["num_classes"]) != n_cls:
            raise UserError(f"--teacher {cfg.teacher}: has {tinfo['num_classes']} classes, the data {n_cls}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run.mkdir(parents=True, exist_ok=True)
    if not resume:
        _save_config(run, cfg)
    step = 0
    if has_ckpt:
        step = int(load_checkpoint(run, model, opt)["step"])
    spe = max(1, x.shape[0] // cfg.batch)
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
    t0, last = time.time(), float("nan")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    with Progress(TextColumn("[bold]classify[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("loss {task.fields[loss]:.3f}"), disable=not progress) as bar:
        task = bar.add_task("train", total=total, completed=step, loss=last)
        model.train()
        while step < total:
            epoch, k = divmod(step, spe)
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
            idx = perm[k * cfg.batch:(k + 1) * cfg.batch]
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            xb, yb = shift_batch(x[idx], cfg.shift, gen), y[idx]
            for g in opt.param_groups:
                g["lr"] = cosine_lr(step, total, cfg.lr, min(cfg.warmup_steps, total // 5))
            tl = None
            if teacher is not None:
                with torch.no_grad():
                    tl = teacher(xb)
            loss = classification_loss(model(xb), yb, tl, cfg.kd_weight, cfg.kd_temperature, cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged (loss {loss.item()}) at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            last = float(loss.item())
            bar.update(task, advance=1, loss=last)
            if (step % cfg.checkpoint_every == 0 or step == total):
                save_checkpoint(run, model, opt, {"step": step, "epoch": step // spe, "total": total})
    save_model(run, model, cfg, classes)
    return {"step": step, "seconds": round(time.time() - t0, 2), "last_loss": last}


def _train_split(cfg: ClassifyConfig, size: tuple[int, int]):
    from donna_nas.data.imagefolder import load_split

    if not cfg.data:
        raise UserError("--data is required (a folder with train/ and val/ in ImageFolder layout)")
    return load_split(cfg.data, "train", size)


def save_model(run: Path, model: ClassifierNet, cfg: ClassifyConfig, classes: list[str]) -> None:
    """Weights + ``model.json``. An architecture from a build-supernet run is recorded as its
    string with a copy of the space (``RUN/space.yaml``), so the model outlives that folder."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(run / "model.safetensors") as tmp:
        save_file(tensors, str(tmp))
    arch, space, sn = resolve_backbone(cfg.backbone, cfg.space)
    if sn is not None:
        write_text_atomic(run / "space.yaml", (sn / "space.yaml").read_text())
        space = str((run / "space.yaml").resolve())
    write_json_atomic(run / "model.json", {
        "task": "classify", "backbone": arch, "space": space, "num_classes": len(classes),
        "classes": list(classes), "height": cfg.height, "width": cfg.width,
        "params": int(sum(p.numel() for p in model.parameters())),
        "init": "blockwise-distilled" if sn is not None else ("torchvision" if cfg.weights else "random"),
        "init_from": str(sn) if sn is not None else None, "teacher": cfg.teacher})
