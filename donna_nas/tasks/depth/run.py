"""Depth run directory: resolved config, atomic checkpoints (safetensors + JSON), final model files.

Layout of ``RUN/``::

    config.yaml                 resolved training settings (what --resume continues with)
    checkpoints/last.safetensors  every tensor needed to continue: weights, optimizer moments, torch RNG;
                                  the JSON state is embedded in its metadata so the pair can never disagree
    checkpoints/last.json       the same JSON state, human-readable (step, epoch, lr, RNG of python/numpy)
    checkpoints/prev.safetensors  the checkpoint before it: ``--resume`` falls back to it when
                                  last.safetensors is missing or truncated (a kill or a full disk)
    model.safetensors, model.json  the trained depth network (encoder + decoder) and how to rebuild it
    metrics.json, report.md, plots/   written by ``evaluate``
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from donna_nas.errors import UserError
from donna_nas.runtime.config_file import read_config_mapping, read_text
from donna_nas.runtime.io import (atomic_path, kill_point, remove_stale_temp,
                                  write_json_atomic, write_text_atomic)

__all__ = ["DepthConfig", "resolve_model_names", "save_config", "load_config", "save_checkpoint", "load_checkpoint", "checkpoint_path",
           "has_checkpoint", "resolve_paths", "PATH_FIELDS"]

# config fields that may name files or folders; config.yaml stores them absolute so that
# ``--resume`` works from any working directory
PATH_FIELDS = ("data", "backbone", "space", "weights", "pose_weights", "seg_teacher", "groups", "train_split",
               "init_from", "distill_from")


@dataclass
class DepthConfig:
    """Every setting of a depth training run (Monodepth2 defaults unless noted)."""

    data: str = ""
    backbone: str = "resnet18"
    space: str | None = None
    weights: str | None = None  # torchvision-format ResNet file for the depth encoder
    pose_weights: str | None = None  # same for the pose encoder (ResNet18)
    height: int = 192
    width: int = 640
    epochs: int = 20
    batch: int = 12
    lr: float = 1e-4
    lr_step: int = 15  # epochs per ×lr_gamma decay
    lr_gamma: float = 0.1
    act: str = "elu"
    frame_ids: list[int] = field(default_factory=lambda: [0, -1, 1])
    scales: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    min_depth: float = 0.1
    max_depth: float = 100.0
    smoothness: float = 1e-3
    automask: bool = True
    xdistill: bool = False
    seg_teacher: str | None = None
    xdistill_weight: float = 0.1
    # the decoder scales whose disparity the X-Distill transfer net reads (None: every scale in
    # ``scales``). Each scale runs the transfer net at the input size, which makes it the costliest
    # network of a small encoder's step with all four; [0] reads the full-resolution map only
    xdistill_scales: list[int] | None = None
    groups: str | None = None  # YAML class→group mapping; default: the shipped one
    seed: int = 0
    workers: int = 0
    checkpoint_every: int = 200  # steps
    max_steps: int | None = None  # stop early after this many optimizer steps in total
    train_split: str | None = None  # default DATA/splits/train_files.txt
    # warm start: a depth run directory (its checkpoint's depth and pose nets, fresh optimizer) or a
    # shipped model name (its depth net); the run then continues training from those weights
    init_from: str | None = None
    # distillation from a trained depth model (a depth run directory or a shipped model name): its
    # four disparity scales on the same augmented frame are regressed (L1 of log disparity) with
    # weight distill_weight, added to the self-supervised loss (DONNA's finetune of a searched encoder)
    distill_from: str | None = None
    distill_weight: float = 1.0
    # "bf16": the depth and pose nets run under bfloat16 autocast (weights, Adam and the loss stay
    # float32). About 3x faster convolutions on CPUs with AMX / AVX512-BF16, slower elsewhere.
    mixed_precision: str = "off"
    # how the photometric loss samples the warped source (geometry.WARP_SAMPLING): "exact", or
    # "monodepth2", the half-pixel magnification of Monodepth2's code on PyTorch >= 1.3
    warp: str = "exact"
    # a backbone from a build-supernet run starts from its distilled blocks joined with bridges
    # (donna_nas.distill.assemble); False joins them raw, as releases before the bridges did
    # (kept for the comparison in experiments/final_finetune_curve.py --joins)
    bridge: bool = True
    # the pose net runs once on both frame pairs stacked along the batch, not once per pair as in
    # Monodepth2: steps 1.10x faster (experiments/bench_train.py --kernels). Its batch-norm statistics are
    # then taken over both pairs (2 × batch samples) instead of each pair alone; the pose net is
    # used only in training (the learning curve against per-pair calls: docs/depth.md).
    # Runs whose config.yaml predates this field resume with False, as they were trained
    pose_batch_pairs: bool = True
    # the pose net sees the frames average-pooled by this factor (1: the training size, as in
    # Monodepth2). Ego-motion is six numbers for the whole frame, so the pose net needs less detail
    # than the depth net: at 2 it costs a quarter of the FLOPs (a ResNet18 step at 64x192 1.29x
    # faster), while the depth net and the photometric loss keep the full resolution; the learning
    # curve against 1: docs/depth.md, "Trainer speed". Runs whose config.yaml predates this field
    # resume with 1, as they were trained
    pose_downsample: int = 2

    def validate(self) -> None:
        if self.height % 32 or self.width % 32:
            raise UserError(f"--size {self.height}x{self.width}: height and width must be multiples of 32")
        if self.act not in ("elu", "relu"):
            raise UserError(f"--act {self.act}: use elu or relu")
        if self.frame_ids[0] != 0 or len(self.frame_ids) < 2:
            raise UserError(f"frame_ids {self.frame_ids}: must start with 0 and name at least one source frame")
        if self.xdistill and not self.seg_teacher:
            raise UserError("--xdistill needs --seg-teacher (a teacher file, an ONNX/TorchScript model, a label folder or 'labels')")
        if self.xdistill_scales is not None and (not self.xdistill_scales
                                                 or any(x not in self.scales for x in self.xdistill_scales)):
            raise UserError(f"--xdistill-scales {','.join(map(str, self.xdistill_scales))}: use one or more of "
                            f"the trained scales {','.join(map(str, self.scales))}")
        from donna_nas.tasks.depth.geometry import WARP_SAMPLING

        if self.warp not in WARP_SAMPLING:
            raise UserError(f"--warp {self.warp}: use {' or '.join(WARP_SAMPLING)}")
        if self.mixed_precision not in ("off", "bf16"):
            raise UserError(f"--mixed-precision {self.mixed_precision}: use off or bf16")
        if self.distill_weight < 0:
            raise UserError(f"--distill-weight {self.distill_weight}: must be >= 0")
        f = self.pose_downsample
        if f < 1 or self.height % f or self.width % f or self.height // f < 16 or self.width // f < 16:
            raise UserError(f"--pose-downsample {f}: must be at least 1, divide --size {self.height}x{self.width} "
                            "and leave the pose net at least 16x16 pixels (1 keeps the training size)")
        if self.batch < 1 or self.epochs < 1:
            raise UserError("--batch and --epochs must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr {self.lr}: must be a finite number above 0 (Monodepth2: 1e-4)")
        if not (0 < self.min_depth < self.max_depth) or not math.isfinite(self.max_depth):
            raise UserError(f"min_depth {self.min_depth}, max_depth {self.max_depth}: need 0 < min < max, finite")
        if self.xdistill_weight < 0 or self.smoothness < 0:
            raise UserError(f"--xdistill-weight {self.xdistill_weight}, smoothness {self.smoothness}: must be >= 0")
        if self.workers < 0:
            raise UserError(f"--workers {self.workers}: must be >= 0 (0 loads data in the training process)")
        if self.checkpoint_every < 1 or (self.max_steps is not None and self.max_steps < 0):
            raise UserError(f"--max-steps {self.max_steps}, checkpoint_every {self.checkpoint_every}: need "
                            "max_steps >= 0 and checkpoint_every >= 1 (leave --max-steps out to train every epoch)")


def resolve_model_names(cfg: DepthConfig) -> DepthConfig:
    """``--backbone NAME`` of a shipped depth model: that model's architecture, warm-started from
    its whole depth net (unless ``init_from`` names another start). In place."""
    from donna_nas.tasks.depth.zoo import is_model_name, resolve_model

    if is_model_name(cfg.backbone):
        shipped = resolve_model(cfg.backbone, kind="depth")
        info = json.loads((shipped.folder / "model.json").read_text())
        cfg.init_from = cfg.init_from or shipped.name
        cfg.backbone, cfg.space = info["backbone"], info.get("space")
    return cfg


def resolve_paths(cfg: DepthConfig) -> DepthConfig:
    """Make every path field that names an existing file or folder absolute (in place)."""
    for name in PATH_FIELDS:
        v = getattr(cfg, name)
        if isinstance(v, str) and v and Path(v).exists():
            setattr(cfg, name, str(Path(v).resolve()))
    return cfg


def save_config(run: Path, cfg: DepthConfig) -> None:
    """Write ``RUN/config.yaml`` with absolute paths (a new run: stale temp files are removed)."""
    remove_stale_temp(run)
    resolve_paths(cfg)
    write_text_atomic(Path(run) / "config.yaml", yaml.safe_dump(asdict(cfg), sort_keys=False))
    kill_point(f"depth-start:{Path(run)}")


def load_config(run: Path) -> DepthConfig:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run} a depth run directory (made by finetune --task depth)?")
    remove_stale_temp(run)  # a run is opened by the process that continues it
    obj = read_config_mapping(path, DepthConfig)
    obj.setdefault("pose_batch_pairs", False)  # written before the field: one pose call per pair
    obj.setdefault("pose_downsample", 1)  # written before the field: the pose net at the training size
    cfg = DepthConfig(**obj)
    try:
        cfg.validate()
    except UserError as exc:  # its messages name the CLI flags that set the fields
        raise UserError(f"{path}: {exc}; fix the field in the file (or delete the run)") from None
    return cfg


def checkpoint_path(run: Path) -> Path:
    return Path(run) / "checkpoints" / "last.safetensors"


def previous_checkpoint_path(run: Path) -> Path:
    return Path(run) / "checkpoints" / "prev.safetensors"


def has_checkpoint(run: Path) -> bool:
    """True when ``run`` holds a checkpoint to resume from (the last one or the one before)."""
    return checkpoint_path(run).is_file() or previous_checkpoint_path(run).is_file()


def read_safetensors(path: Path, fix: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of ``path``; a truncated or foreign file is a one-line ``UserError``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except FileNotFoundError:
        raise UserError(f"{path}: not found; {fix}") from None
    except OSError:
        raise
    except Exception as exc:  # SafetensorError (truncated, not safetensors), ValueError
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: unreadable, truncated or not a safetensors file ({msg}); {fix}") from None


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state().clone(), "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64))}
    meta = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    n = meta["numpy"]
    np.random.set_state((n[0], tensors["rng.numpy"].numpy().astype(np.uint32), n[1], n[2], n[3]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> Path:
    """Atomically write weights, optimizer moments, RNG and ``state`` (step, epoch, …)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    opt = optimizer.state_dict()
    for pid, st in opt["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous().clone()
    rng_t, rng_meta = _rng_state()
    tensors.update(rng_t)
    full = dict(state)
    full["param_groups"] = opt["param_groups"]
    full["rng"] = rng_meta
    text = json.dumps(full, sort_keys=True)
    path = checkpoint_path(run)
    prev = previous_checkpoint_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the new checkpoint is written and fsynced under a temporary name; then last → prev and the
    # new file → last. A kill in between leaves prev.safetensors, which load_checkpoint falls back to
    with atomic_path(path, keep_previous=prev) as tmp:
        save_file(tensors, str(tmp), metadata={"state": text})
    write_json_atomic(path.with_suffix(".json"), {k: v for k, v in full.items() if k != "rng"})
    return path


def read_checkpoint(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """(tensors, JSON state, file) of RUN's checkpoint. A missing or truncated ``last.safetensors``
    falls back to ``prev.safetensors`` (with a note on stderr); one line when neither reads."""
    path = checkpoint_path(run)
    candidates = [p for p in (path, previous_checkpoint_path(run)) if p.is_file()]
    if not candidates:
        raise UserError(f"{path}: no checkpoint to resume from; run without --resume to start training")
    errors = []
    for p in candidates:
        try:
            tensors, meta = read_safetensors(p, "")
            state = json.loads(meta["state"])
            break
        except (UserError, KeyError, json.JSONDecodeError) as exc:
            errors.append(f"{p}: {exc}" if not isinstance(exc, UserError) else str(exc).rstrip("; "))
    else:
        raise UserError(f"{errors[0]}; no older checkpoint to fall back to: delete {path.parent} to "
                        f"restart training from step 0, or restore the file")
    if p != path:
        import sys

        print(f"note: {path} is missing or unreadable; resuming from the previous checkpoint {p} "
              f"(step {state.get('step')})", file=sys.stderr)
    return tensors, state, p


def load_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore what ``save_checkpoint`` wrote (RNG included); returns the JSON state.

    A missing or truncated ``last.safetensors`` falls back to ``prev.safetensors`` (with a note).
    """
    tensors, state, _ = read_checkpoint(run)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        per: dict[int, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, pid, name = k.split(".", 2)
                per.setdefault(int(pid), {})[name] = v
        optimizer.load_state_dict({"state": per, "param_groups": state["param_groups"]})
    _set_rng_state(tensors, state["rng"])
    return state


def save_model(run: Path, depth_net: torch.nn.Module, cfg: DepthConfig, extra: dict[str, Any] | None = None) -> None:
    """The exportable depth network alone, plus what is needed to rebuild it."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in depth_net.state_dict().items()}
    with atomic_path(Path(run) / "model.safetensors") as tmp:
        save_file(tensors, str(tmp))
    backbone, space = cfg.backbone, cfg.space
    if Path(backbone).is_dir():
        # a build-supernet run: record the architecture itself and keep a copy of its space, so
        # the trained model does not depend on that folder (or on a later search rewriting it)
        from donna_nas.tasks.depth.backbones import selected_architecture

        write_text_atomic(Path(run) / "space.yaml", (Path(backbone) / "space.yaml").read_text())
        backbone, space = selected_architecture(Path(backbone)), str((Path(run) / "space.yaml").resolve())
    info = {
        "backbone": backbone,
        "space": space,
        "init_from": cfg.backbone,
        "act": cfg.act,
        "height": cfg.height,
        "width": cfg.width,
        "min_depth": cfg.min_depth,
        "max_depth": cfg.max_depth,
        "params": int(sum(p.numel() for p in depth_net.parameters())),
    }
    info.update(extra or {})
    write_json_atomic(Path(run) / "model.json", info)


def _model_dir(spec: str | Path) -> tuple[Path, str]:
    """(folder holding model.json + model.safetensors, how to repair it) for a run or a shipped name."""
    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: a file, not a run directory; pass the folder a `donna-nas finetune` run "
                        "wrote (with model.json and model.safetensors) or a shipped model name")
    if path.is_dir() or len(path.parts) > 1:  # a path, not a name: a run directory
        return path, f"rewrite it with `donna-nas finetune --resume --out {path}` (from its checkpoint)"
    from donna_nas.tasks.depth.zoo import resolve_model

    shipped = resolve_model(str(spec))  # unknown names: one line listing the known ones
    return shipped.folder, "reinstall donna-nas (a shipped model file is damaged)"


def load_model_weights(spec: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The depth net's tensors (fp32) of a finished run or a shipped model, and the file they came from."""
    folder, fix = _model_dir(spec)
    path = folder / "model.safetensors"
    tensors, _ = read_safetensors(path, fix)
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, path


def _check_model_json(info: Any, path: Path, fix: str) -> None:
    """The fields that rebuild the network, with their types: one line naming the field otherwise."""
    if not isinstance(info, dict):
        raise UserError(f"{path}: expected a JSON object (backbone, height, width, act, ...); {fix}")
    expected = {"backbone": str, "act": str, "height": int, "width": int}
    for key, tp in expected.items():
        v = info.get(key)
        if not isinstance(v, tp) or isinstance(v, bool) or (tp is int and v < 1):
            raise UserError(f"{path}: field {key!r} is {v!r}; expected "
                            f"{'a whole number above 0' if tp is int else 'text'}; {fix}")
    if info.get("space") is not None and not isinstance(info["space"], str):
        raise UserError(f"{path}: field 'space' is {info['space']!r}; expected a space name or file; {fix}")


def load_model(run: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the depth network of a finished run or of a shipped model (by name)."""
    from donna_nas.tasks.depth.backbones import make_encoder
    from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet

    folder, fix = _model_dir(run)
    mj = folder / "model.json"
    if not mj.is_file():
        raise UserError(f"{mj}: not found; training in {folder} has not finished (use --resume to complete it)")
    try:
        info = json.loads(read_text(mj, fix))
    except json.JSONDecodeError as exc:
        raise UserError(f"{mj}: corrupt JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    _check_model_json(info, mj, fix)
    try:
        enc = make_encoder(info["backbone"], info.get("space"), init=False)
    except UserError as exc:
        raise UserError(f"{mj}: field 'backbone': {exc}") from None
    net = DepthNet(enc, DepthDecoder(enc.channels, act=info["act"]))
    tensors, path = load_model_weights(folder)
    broken = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # a diverged run's weights: every prediction would be NaN, in every export too
        raise UserError(f"{path}: {len(broken)} tensor(s) hold NaN or infinite values (first: {broken[0]}); "
                        f"the training diverged; {fix}, or retrain with a lower --lr")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise UserError(f"{path}: does not match {mj} ({str(exc).splitlines()[0]}); {fix}") from None
    return net.eval(), info
