"""`donna-nas build-supernet`: blockwise distillation, block-quality table and accuracy predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from donna_nas.cli.common import config_help, given, threads_option

# Options that mirror a SupernetConfig field default to None: the config's default (shown in --help).
_SUPERNET = "donna_nas.distill.pipeline:SupernetConfig"


def _help(name: str, text: str = "") -> str:
    return config_help(_SUPERNET, name, text)


def build_supernet_cmd(
    space: str = typer.Option(..., "--space", help="Space YAML file or shipped name (tiny, donna_depth)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help=_help("teacher", "resnet18 | resnet50 | a depth run directory | a shipped model name (`donna-nas models list`).")),
    teacher_weights: Optional[str] = typer.Option(None, "--teacher-weights", help="A ResNet teacher's weights: a torchvision-format state dict or a shipped model name (its encoder)."),
    data: Optional[str] = typer.Option(None, "--data", help="KITTI-layout folder with splits/{train,val}_files.txt; classify: train/ and val/ in ImageFolder layout."),
    task: Optional[str] = typer.Option(None, "--task", help=_help("task", "Predictor finetune task: depth (Sq Rel), classify (top-1) or distill (label-free NSR proxy).")),
    out: Path = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    workers: int = typer.Option(1, "--workers", help="Parallel jobs (processes, or Ray CPUs)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join a running Ray cluster instead of starting one."),
    predictor_archs: Optional[int] = typer.Option(None, "--predictor-archs", help=_help("predictor_archs", "Architectures finetuned to fit the predictor (0: skip).")),
    predictor_test: Optional[int] = typer.Option(None, "--predictor-test", help=_help("predictor_test", "Extra held-out architectures to measure ranking quality.")),
    size: Optional[str] = typer.Option(None, "--size", help="BKD resolution HxW (default half the space's input size)."),
    train_frames: Optional[int] = typer.Option(None, "--train-frames", help=_help("train_frames")),
    val_frames: Optional[int] = typer.Option(None, "--val-frames", help=_help("val_frames")),
    bkd_steps: Optional[int] = typer.Option(None, "--bkd-steps", help=_help("bkd_steps", "Training steps per block supernet.")),
    ft_steps: Optional[int] = typer.Option(None, "--ft-steps", help=_help("ft_steps", "Finetune steps per predictor architecture.")),
    ft_objective: Optional[str] = typer.Option(None, "--ft-objective", help=_help("ft_objective", "Predictor finetune loss: kd (distil the teacher depth model's outputs), selfsup, kd+selfsup, or auto (kd when the teacher is a depth model).")),
    ft_decoder: Optional[str] = typer.Option(None, "--ft-decoder", help=_help("ft_decoder", "Where the predictor finetune's depth decoder starts: stitched (the teacher's decoder through the BKD adapters), random, or auto (stitched when the teacher is a depth model).")),
    rank_check: Optional[int] = typer.Option(None, "--rank-check", help=_help("rank_check", "Also train N choices of one block alone and compare rankings.")),
    seed: Optional[int] = typer.Option(None, "--seed", help=_help("seed")),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed build; finished jobs are skipped."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Distil every block choice of SPACE from the teacher, write the block-quality table and fit the predictor."""
    from donna_nas.cli import console
    from donna_nas.cli.common import parse_size
    from donna_nas.distill.pipeline import SupernetConfig, build_supernet
    from donna_nas.runtime.executor import make_executor
    from donna_nas.cli.common import check_out_dir
    from donna_nas.errors import UserError
    from donna_nas.runtime.io import remove_stale_temp
    from donna_nas.runtime.threads import set_threads
    from donna_nas.space import load_space

    set_threads(threads)
    check_out_dir(out)
    # config.yaml stores absolute paths, so --resume works from any directory
    teacher, teacher_weights, data = (_absolute(v) for v in (teacher, teacher_weights, data))
    if resume and (out / "config.yaml").is_file():
        _check_resume_inputs(out, teacher_weights=teacher_weights, data=data)
        remove_stale_temp(out)
    elif resume and not out.exists():
        raise UserError(f"--resume: {out} does not exist; drop --resume to start a build there, or pass the "
                        "folder of the build to continue")
    sp = load_space(space)
    opts = given(teacher=teacher, teacher_weights=teacher_weights, data=data, task=task,
                 train_frames=train_frames, val_frames=val_frames, bkd_steps=bkd_steps,
                 predictor_archs=predictor_archs, predictor_test=predictor_test, ft_steps=ft_steps,
                 rank_check=rank_check, seed=seed, ft_objective=ft_objective, ft_decoder=ft_decoder)
    if size:
        opts["height"], opts["width"] = parse_size(size)
    cfg = SupernetConfig(**opts)  # the options given; SupernetConfig supplies the rest
    ex = make_executor(executor, workers, ray_address)
    res = build_supernet(sp, out, cfg, executor=ex, resume=resume)
    console.print(f"block-quality table: {out / 'tables' / 'block_quality.csv'} ({len(res.quality)} rows)")
    for e in res.evaluation:
        console.print(f"  {e['model']:<26} CV τ {e['cv_tau']:.3f}  held-out τ {e['test_tau']:.3f}")
    if res.predictor:
        from donna_nas.predictor.quality import PredictorQuality

        console.print(f"predictor: {out / 'predictor.json'}; report: {out / 'report.md'}")
        warning = PredictorQuality.from_file(out / "predictor.json").warning()
        if warning:
            console.print(f"[bold yellow]{warning}[/]")


def _absolute(value: Optional[str]) -> Optional[str]:
    """An existing path made absolute; names (resnet18) and None unchanged."""
    if value and Path(value).exists():
        return str(Path(value).resolve())
    return value


def _check_resume_inputs(out: Path, **given: Optional[str]) -> None:
    """With --resume, a --teacher-weights/--data that differs from the stored one is refused."""
    from donna_nas.cli.common import same_path
    from donna_nas.distill.pipeline import SupernetConfig
    from donna_nas.errors import UserError
    from donna_nas.runtime.config_file import read_config_mapping

    path = out / "config.yaml"
    stored = read_config_mapping(path, SupernetConfig, "restore it or start a new --out")
    for name, value in given.items():
        old = stored.get(name)
        if value is not None and (old is None or not same_path(value, old)):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {value}: {path} was built with {flag} {old}; drop {flag} to resume "
                            "with the stored one, or start a new build with another --out")


def register(app: typer.Typer) -> None:
    app.command("build-supernet")(build_supernet_cmd)
