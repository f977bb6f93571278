"""``finetune --task depth`` and ``train-seg-teacher``: thin wrappers over donna_nas.tasks.depth."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from donna_nas.cli.common import (check_out_dir, check_out_file, config_help, default_of, given, has_default,
                                  parse_size, same_path, show_value, threads_option, with_default)
from donna_nas.errors import UserError
from donna_nas.runtime.threads import set_threads

# Options that mirror a config field default to None: the config's default (read from these);
# ``finetune --task classify`` passes only the options given, so ClassifyConfig's defaults apply there.
_DEPTH = "donna_nas.tasks.depth.run:DepthConfig"
_CLASSIFY = "donna_nas.tasks.classify.train:ClassifyConfig"
_SEG = "donna_nas.tasks.depth.seg_teacher:train_seg_teacher"


def _help(name: str, text: str = "") -> str:
    """Help of a finetune option: DepthConfig's default, and ClassifyConfig's where it differs."""
    shown = show_value(default_of(_DEPTH, name))
    if has_default(_CLASSIFY, name) and default_of(_CLASSIFY, name) != default_of(_DEPTH, name):
        shown += f"; classify: {show_value(default_of(_CLASSIFY, name))}"
    return with_default(text, shown)


def finetune(
    task: str = typer.Option("depth", "--task", help="Task to train: 'depth' (Monodepth2 / X-Distill) or 'classify' (CE + KD)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder in KITTI raw layout with splits/ (not needed with --resume)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help=_help("backbone", "resnet18, resnet50, an architecture string (with --space), a build-supernet run, or a shipped model name (`models list`: its architecture, started from its weights).")),
    distill_from: Optional[str] = typer.Option(None, "--distill-from", help="Also regress this trained depth model's outputs (a depth run directory or a shipped model name)."),
    distill_weight: Optional[float] = typer.Option(None, "--distill-weight", help=_help("distill_weight", "Weight of --distill-from's loss.")),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Warm start: a depth run directory (depth + pose nets) or a shipped model name (depth net); fresh optimizer."),
    space: Optional[str] = typer.Option(None, "--space", help="Search space YAML or shipped name, for architecture strings."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="torchvision-format ResNet weights for the depth encoder."),
    pose_weights: Optional[Path] = typer.Option(None, "--pose-weights", help="torchvision-format ResNet18 weights for the pose encoder."),
    xdistill: Optional[bool] = typer.Option(None, "--xdistill", help="Add the X-Distill semantic loss (training only)."),
    seg_teacher: Optional[str] = typer.Option(None, "--seg-teacher", help="Teacher: train-seg-teacher .safetensors, a shipped name (synth-segnet), .onnx, TorchScript .pt, or 'labels'."),
    groups: Optional[Path] = typer.Option(None, "--groups", help="Class→group YAML (default: shipped mapping)."),
    xdistill_weight: Optional[float] = typer.Option(None, "--xdistill-weight", help=_help("xdistill_weight", "Weight of the X-Distill cross-entropy.")),
    xdistill_scales: Optional[str] = typer.Option(None, "--xdistill-scales", help="Decoder scales the X-Distill transfer net reads, comma-separated (e.g. 0: the full-resolution depth map only; default: every scale)."),
    size: Optional[str] = typer.Option(None, "--size", help=with_default(
        "Training size HxW (multiples of 32; classify: the training images' size).",
        (default_of(_DEPTH, "height"), default_of(_DEPTH, "width")))),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=_help("epochs", "Epochs (with --resume: the run's).")),
    batch: Optional[int] = typer.Option(None, "--batch", help=_help("batch")),
    lr: Optional[float] = typer.Option(None, "--lr", help=_help("lr")),
    lr_step: Optional[int] = typer.Option(None, "--lr-step", help=_help("lr_step", "Epochs between ×0.1 learning-rate decays.")),
    act: Optional[str] = typer.Option(None, "--act", help=_help("act", "Decoder activation: elu (Monodepth2) or relu (INT8-friendly).")),
    seed: Optional[int] = typer.Option(None, "--seed", help=_help("seed")),
    workers: Optional[int] = typer.Option(None, "--workers", help=_help("workers", "DataLoader worker processes.")),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help=_help("checkpoint_every", "Steps between checkpoints.")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in total."),
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help=_help("mixed_precision", "depth: 'bf16' runs the depth and pose nets under bfloat16 autocast (weights, Adam and loss stay float32): faster on CPUs with AMX/AVX512-BF16, slower elsewhere.")),
    warp: Optional[str] = typer.Option(None, "--warp", help=_help("warp", "depth: how the photometric loss samples the warped frame: 'exact', or 'monodepth2' (Monodepth2's code on PyTorch >= 1.3: align_corners=False on an align_corners=True grid, a half-pixel magnification).")),
    pose_batch_pairs: Optional[bool] = typer.Option(None, "--pose-batch-pairs/--pose-per-pair", help=_help("pose_batch_pairs", "depth: one pose-net call on both frame pairs (batch-norm statistics over both; faster), or one call per pair as in Monodepth2.")),
    pose_downsample: Optional[int] = typer.Option(None, "--pose-downsample", help=_help("pose_downsample", "depth: the pose net sees the frames average-pooled by this factor (1: the training size, as in Monodepth2); the depth net and the loss keep the full size.")),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate on the Eigen test split at the end."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="classify: classifier run to distil from (default: the teacher of the build-supernet run given as --backbone or --space)."),
    export: bool = typer.Option(False, "--export", help="classify: also export ONNX fp32 + INT8 with top-1 and FPS."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train a depth network (Monodepth2 self-supervision, optionally X-Distill) or, with --task classify,
    an image classifier (--backbone RUN or --space RUN: blockwise-distilled init from a build-supernet run) into a run directory."""
    set_threads(threads)
    check_out_dir(out)
    if task == "classify":  # the options given; ClassifyConfig supplies the rest
        for flag, value in (("--mixed-precision", mixed_precision), ("--warp", warp),
                            ("--pose-batch-pairs/--pose-per-pair", pose_batch_pairs),
                            ("--pose-downsample", pose_downsample)):
            if value is not None:
                raise UserError(f"{flag}: depth training only; drop it with --task classify")
        from donna_nas.cli.classify import run_classify

        run_classify(data=data, out=out, resume=resume, evaluate=evaluate, export=export,
                     **given(backbone=backbone, space=space, weights=weights, teacher=teacher, size=size,
                             epochs=epochs, batch=batch, lr=lr, seed=seed, checkpoint_every=checkpoint_every,
                             max_steps=max_steps))
        return
    if task != "depth":
        raise UserError(f"--task {task}: use depth or classify")
    from donna_nas.tasks.depth.run import DepthConfig, has_checkpoint, load_config
    from donna_nas.tasks.depth.train import train_depth

    if resume:
        stored = load_config(out)
        if data is not None and not same_path(data, stored.data):
            raise UserError(f"--data {data}: {out / 'config.yaml'} was trained on {stored.data}; drop --data to "
                            "resume on that, or start a new run with another --out")
        overrides = {k: v for k, v in (("epochs", epochs), ("max_steps", max_steps)) if v is not None}
        if has_checkpoint(out):
            res = train_depth(None, out, resume=True, overrides=overrides)
        else:  # stopped before its first checkpoint: start over with the stored settings (same seed)
            stored.max_steps = None
            for k, v in overrides.items():
                setattr(stored, k, v)
            res = train_depth(stored, out)
        _finish(out, res, evaluate)
        return
    if data is None:
        raise UserError("--data is required (the dataset folder), unless --resume continues an existing run")
    opts = given(backbone=backbone, space=space, weights=str(weights) if weights else None, init_from=init_from,
                 distill_from=distill_from, distill_weight=distill_weight,
                 pose_weights=str(pose_weights) if pose_weights else None, epochs=epochs, batch=batch, lr=lr,
                 lr_step=lr_step, act=act, xdistill=xdistill, seg_teacher=seg_teacher,
                 xdistill_weight=xdistill_weight, xdistill_scales=_int_list("--xdistill-scales", xdistill_scales),
                 groups=str(groups) if groups else None, seed=seed, workers=workers,
                 checkpoint_every=checkpoint_every, max_steps=max_steps, mixed_precision=mixed_precision, warp=warp,
                 pose_batch_pairs=pose_batch_pairs, pose_downsample=pose_downsample)
    if size is not None:
        opts["height"], opts["width"] = parse_size(size)
    cfg = DepthConfig(data=str(data), **opts)  # the options given; DepthConfig supplies the rest
    res = train_depth(cfg, out)
    _finish(out, res, evaluate)


def _int_list(option: str, text: str | None) -> list[int] | None:
    """"0,1" → [0, 1]; None stays None (the config's default)."""
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option} {text}: use comma-separated integers, e.g. 0 or 0,1") from None


def _finish(out: Path, res: dict, evaluate: bool) -> None:
    if evaluate and int(os.environ.get("RANK", "0")) == 0:
        from donna_nas.tasks.depth.evaluate import evaluate_run

        m = evaluate_run(out)
        typer.echo("Eigen: " + "  ".join(f"{k} {v:.4f}" for k, v in m.items()))
        typer.echo(f"report: {Path(out) / 'report.md'}")
    else:
        typer.echo(f"trained {res['step']} steps; model in {Path(out) / 'model.safetensors'}")


def train_seg_teacher_cmd(
    data: Path = typer.Option(..., "--data", help="Dataset folder with semantics/ label maps."),
    out: Path = typer.Option(..., "--out", help="Output teacher file (.safetensors)."),
    size: Optional[str] = typer.Option(None, "--size", help=config_help(_SEG, "size", "Training size HxW.")),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=config_help(_SEG, "epochs")),
    batch: Optional[int] = typer.Option(None, "--batch", help=config_help(_SEG, "batch")),
    lr: Optional[float] = typer.Option(None, "--lr", help=config_help(_SEG, "lr")),
    seed: Optional[int] = typer.Option(None, "--seed", help=config_help(_SEG, "seed")),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train a small segmentation network on the dataset's labels (X-Distill teacher)."""
    from donna_nas.tasks.depth.seg_teacher import train_seg_teacher

    set_threads(threads)
    check_out_file(out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out}: the teacher file must end in .safetensors")
    opts = given(size=None if size is None else parse_size(size), epochs=epochs, batch=batch, lr=lr, seed=seed)
    meta = train_seg_teacher(data, out, **opts)  # the options given; the function's defaults for the rest
    typer.echo(f"wrote {out}: pixel accuracy (last epoch, train) {meta['last_epoch_pixel_acc']:.3f}, {meta['seconds']} s")


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("train-seg-teacher")(train_seg_teacher_cmd)
