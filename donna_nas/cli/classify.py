"""Classification commands: ``data digits``, ``train-classifier`` (teacher or any backbone),
``export-classifier``, ``quickstart-classify``; ``finetune --task classify`` calls ``run_classify``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from donna_nas.cli.common import config_help, threads_option
from donna_nas.runtime.threads import set_threads

from donna_nas.errors import UserError

# train-classifier options that mirror a ClassifyConfig field default to None: the config's default.
_CLASSIFY = "donna_nas.tasks.classify.train:ClassifyConfig"


def _help(name: str, text: str = "") -> str:
    return config_help(_CLASSIFY, name, text)


def digits_cmd(
    out: Path = typer.Option(..., "--out", help="Folder to create (train/, val/, test/ in ImageFolder layout)."),
    size: int = typer.Option(32, "--size", help="Side of the upsampled square images (the scans are 8x8)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the stratified 70/15/15 split."),
) -> None:
    """Write scikit-learn's handwritten digits (1,797 real scans, no download) as an ImageFolder dataset."""
    from donna_nas.cli.common import check_out_dir
    from donna_nas.data.imagefolder import write_digits_imagefolder

    check_out_dir(out)
    counts = write_digits_imagefolder(out, size, seed)
    typer.echo(f"wrote {out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" images of {size}x{size}, 10 classes")


def run_classify(*, data: Optional[Path], out: Path, size: Optional[str] = None, weights: Optional[Path] = None,
                 teacher: Optional[Path] = None, resume: bool = False, evaluate: bool = True, export: bool = False,
                 **options: Any) -> dict[str, Any]:
    """Train a classifier into ``out`` (optionally KD from ``teacher``), then evaluate / export.

    ``options`` are ClassifyConfig fields (backbone, epochs, batch, lr, ...); those left out or None
    take ClassifyConfig's defaults."""
    from donna_nas.cli.common import check_out_dir, given, parse_size

    check_out_dir(out)
    from donna_nas.tasks.classify.train import ClassifyConfig, train_classifier

    options = given(**options)
    if resume:
        overrides = {k: options[k] for k in ("epochs", "max_steps") if k in options}
        res = train_classifier(None, out, resume=True, overrides=overrides)
    else:
        if data is None:
            raise UserError("--data is required (a folder with train/ and val/ in ImageFolder layout), unless --resume")
        # the options given; ClassifyConfig supplies the rest
        cfg = ClassifyConfig(data=str(data), weights=str(weights) if weights else None, **options)
        if teacher is None:
            from donna_nas.tasks.classify.train import resolve_backbone

            run = resolve_backbone(cfg.backbone, cfg.space)[2]
            teacher = _supernet_classifier_teacher(run) if run is not None else None
        cfg.teacher = str(teacher) if teacher else None
        if not teacher:
            cfg.kd_weight = 0.0
        cfg.height, cfg.width = parse_size(size) if size else _data_size(data)
        res = train_classifier(cfg, out)
    typer.echo(f"trained {res['step']} steps in {res['seconds']} s; model in {Path(out) / 'model.safetensors'}")
    metrics: dict[str, Any] = {}
    if export:
        import json

        from donna_nas.tasks.classify.export import export_run

        ex = export_run(out)
        for k in ("fp32", "int8"):
            typer.echo(f"ONNX {k}: top-1 {ex[k]['top1']:.4f}, {ex[k]['fps']:.1f} FPS (batch 1, {ex[k]['threads']} thread)")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    elif evaluate:
        from donna_nas.tasks.classify.evaluate import evaluate_run

        metrics = evaluate_run(out)
    if metrics:
        typer.echo(f"{metrics['split']}: top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
                   f"params {metrics['params']:,}")
        typer.echo(f"report: {Path(out) / 'report.md'}")
    return metrics


def _data_size(data: Path) -> tuple[int, int]:
    """The size of the first training image (digits: the --size it was written with)."""
    from PIL import Image

    from donna_nas.data.imagefolder import ImageFolder, split_dir

    ds = ImageFolder(split_dir(data, "train"))
    try:
        with Image.open(ds.samples[0][0]) as im:
            w, h = im.size
    except OSError:
        raise UserError(f"{ds.samples[0][0]}: cannot read the image; replace or delete it") from None
    return h, w


def _supernet_classifier_teacher(run: Path) -> Optional[Path]:
    """The classifier run a build-supernet used as teacher, if any (default KD teacher)."""
    import json

    try:
        info = json.loads((run / "teacher.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    p = info.get("run")
    if p and (Path(p) / "model.json").is_file():
        try:
            if json.loads((Path(p) / "model.json").read_text()).get("task") == "classify":
                return Path(p)
        except json.JSONDecodeError:
            return None
    return None


def train_classifier_cmd(
    data: Optional[Path] = typer.Option(None, "--data", help="Folder with train/ and val/ (optional test/) in ImageFolder layout."),
    out: Path = typer.Option(..., "--out", help="Run directory."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help=_help("backbone", "resnet18, resnet50, an architecture string (with --space) or a searched build-supernet run (its selected.json; distilled init).")),
    space: Optional[str] = typer.Option(None, "--space", help="Space YAML / shipped name, or a build-supernet run (distilled init of the --backbone architecture)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="torchvision-format ResNet weights (init)."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Classifier run directory to distil from (KD on logits)."),
    size: Optional[str] = typer.Option(None, "--size", help="Input HxW (default: the training images' size)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=_help("epochs", "Epochs (with --resume: the run's).")),
    batch: Optional[int] = typer.Option(None, "--batch", help=_help("batch")),
    lr: Optional[float] = typer.Option(None, "--lr", help=_help("lr", "AdamW peak learning rate (cosine decay).")),
    kd_weight: Optional[float] = typer.Option(None, "--kd-weight", help=_help("kd_weight", "Weight of the KD term (1 - w on cross-entropy).")),
    kd_temperature: Optional[float] = typer.Option(None, "--kd-temperature", help=_help("kd_temperature")),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help=_help("label_smoothing")),
    seed: Optional[int] = typer.Option(None, "--seed", help=_help("seed")),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help=_help("checkpoint_every", "Steps between checkpoints.")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many steps in total."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Top-1/top-5 and confusion matrix at the end."),
    export: bool = typer.Option(False, "--export", help="Also export ONNX fp32 + INT8, with top-1 and FPS."),
    threads: Optional[int] = threads_option(),
) -> None:
    """Train an image classifier (e.g. the ResNet18 teacher for build-supernet --task classify)."""
    set_threads(threads)
    run_classify(data=data, out=out, backbone=backbone, space=space, weights=weights, teacher=teacher, size=size,
                 epochs=epochs, batch=batch, lr=lr, kd_weight=kd_weight, kd_temperature=kd_temperature,
                 label_smoothing=label_smoothing, seed=seed, checkpoint_every=checkpoint_every,
                 max_steps=max_steps, resume=resume, evaluate=evaluate, export=export)


def export_classifier_cmd(
    run: Path = typer.Option(..., "--run", help="A finished classification run directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset (default: the run's)."),
    calib: int = typer.Option(64, "--calib", help="Training images for INT8 calibration."),
    threads: int = typer.Option(1, "--threads", help="ONNX Runtime threads for the FPS measurement."),
) -> None:
    """ONNX fp32 + static INT8 of a classifier, top-1 through ONNX Runtime, batch-1 FPS."""
    from donna_nas.tasks.classify.export import export_run

    ex = export_run(run, str(data) if data else None, calib=calib, threads=threads)
    for k in ("fp32", "int8"):
        typer.echo(f"{k}: {ex[k]['file']}  top-1 {ex[k]['top1']:.4f}  {ex[k]['fps']:.1f} FPS")
    typer.echo(f"report: {run / 'report.md'}")


def quickstart_classify_cmd(
    out: Path = typer.Option(Path("runs/quickstart_classify"), "--out", help="Output folder (resumes if it exists)."),
    tiny: bool = typer.Option(False, "--tiny", help="Toy scale (smoke test, about a minute)."),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = threads_option(),
) -> None:
    """The classification pipeline end to end on the shipped digits: teacher, build-supernet, search, finetune, export."""
    import dataclasses

    from donna_nas.tasks.classify.quickstart import ClassifyQuickstart, run_classify_quickstart

    from donna_nas.cli.common import check_out_dir

    set_threads(threads)
    check_out_dir(out)
    cfg = ClassifyQuickstart.tiny() if tiny else ClassifyQuickstart()
    res = run_classify_quickstart(out, dataclasses.replace(cfg, seed=seed), log=typer.echo)
    typer.echo(f"selected: {res['arch']}")
    typer.echo(res["table"])
    typer.echo(f"summary: {out / 'summary.md'}")


def register(app: typer.Typer) -> None:
    from donna_nas.cli.data import app as data_app

    data_app.command("digits")(digits_cmd)
    app.command("train-classifier")(train_classifier_cmd)
    app.command("export-classifier")(export_classifier_cmd)
    app.command("quickstart-classify")(quickstart_classify_cmd)
