"""`donna-nas evaluate`: Eigen-protocol depth metrics of saved predictions.

Predictions are disparities in the common ``(N, H, W)`` ``.npy`` format (any model, any scale; depth =
1 / disparity, median scaling removes the unknown scale). A positional RUN directory (evaluate a
trained run directly) belongs to the depth task and can be added as an optional argument here.
"""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    run: Path = typer.Argument(None, metavar="RUN", show_default=False,
                               help="A depth run directory: predict its test split and write metrics + report."),
    pred: Path = typer.Option(None, "--pred", help="Predicted disparities, .npy of shape (N, H, W)."),
    gt: Path = typer.Option(None, "--gt", help="gt_depths.npz from 'donna-nas data export-gt'."),
    crop: str = typer.Option("auto", "--crop", help="garg, none, or auto (what the GT file says; garg if unknown)."),
    median_scaling: bool = typer.Option(True, "--median-scaling/--no-median-scaling",
                                        help="Per-image median scaling (monocular models)."),
    scale_factor: float = typer.Option(1.0, "--scale-factor", help="Multiply predicted depth (5.4 for stereo models)."),
    min_depth: float = typer.Option(1e-3, "--min-depth"),
    max_depth: float = typer.Option(80.0, "--max-depth"),
    out: Path = typer.Option(None, "--out", help="Also write the metrics (and baselines) as JSON here."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Read monodepth2's object-array gt_depths.npz (only for trusted files)."),
    data: Path = typer.Option(None, "--data", help="With RUN: evaluate on this data root instead of the run's own."),
    prior: Path = typer.Option(None, "--prior",
                               help="Per-pixel prior depth map (.npy, H x W) for the prior baseline [default: made from "
                                    "the data root's training split ground truth]."),
    model: str = typer.Option(None, "--model", help="A shipped model name (`donna-nas models list`): evaluate it on --data's test split."),
    as_json: bool = typer.Option(False, "--json",
                                 help='Print {"model": {...}, "constant": {...}, "prior": {...}} (seven metrics each).'),
) -> None:
    """Eigen metrics (abs_rel, sq_rel, rmse, rmse_log, a1-a3): `evaluate RUN` predicts a depth run's
    test split; `evaluate --model NAME --data DIR` a shipped model's on any world; `evaluate --pred
    P.npy --gt GT.npz` scores saved disparities."""
    import numpy as np

    from donna_nas.cli import console
    from donna_nas.data.gt import load_gt_depths
    from donna_nas.errors import UserError
    from donna_nas.runtime.io import write_json_atomic
    from donna_nas.tasks.depth.baselines import load_prior
    from donna_nas.tasks.depth.metrics import evaluate_disparities

    import json
    import math

    # options of the --pred/--gt mode: a RUN or --model is scored by the task's own protocol
    pair_only = {"--pred": pred is not None, "--crop": crop != "auto", "--no-median-scaling": not median_scaling,
                 "--scale-factor": scale_factor != 1.0, "--min-depth": min_depth != 1e-3,
                 "--max-depth": max_depth != 80.0, "--allow-pickle": allow_pickle}
    given = [k for k, v in pair_only.items() if v]
    if (run is not None or model is not None) and given:
        raise UserError(f"evaluate {'RUN' if run is not None else '--model'}: {', '.join(given)} apply to "
                        "--pred/--gt only (a run or shipped model is scored with the Eigen protocol it was "
                        "trained for); drop them, or export predictions and use --pred/--gt")
    if not (math.isfinite(min_depth) and math.isfinite(max_depth) and 0 < min_depth < max_depth):
        raise UserError(f"--min-depth {min_depth} --max-depth {max_depth}: need 0 < min < max (Eigen: 1e-3 and 80)")
    if not (math.isfinite(scale_factor) and scale_factor > 0):
        raise UserError(f"--scale-factor {scale_factor}: must be a finite number above 0 (5.4 for stereo models)")

    if model is not None:  # a shipped depth model on any world; nothing is written into the package
        from donna_nas.tasks.depth.evaluate import evaluate_model
        from donna_nas.tasks.depth.run import load_model

        if run is not None or pred is not None:
            raise UserError("evaluate --model NAME: give --data DIR, not a RUN or --pred")
        if data is None:
            raise UserError(f"evaluate --model {model}: --data is required (a dataset folder, e.g. from `donna-nas data synth`)")
        if not (data / "splits" / "test_files.txt").is_file():
            raise UserError(f"--data {data}: no splits/test_files.txt; give a dataset folder made by `donna-nas data synth`")
        net, info = load_model(model)
        res, *_ = evaluate_model(net, info, str(data), gt=str(gt) if gt else None, prior=str(prior) if prior else None)
        rows = {"model": res["metrics"], **res["baselines"]}
        if out is not None:
            write_json_atomic(out, {"model_name": model, **res})
        if as_json:
            print(json.dumps(rows, indent=1, sort_keys=True))
            return
        _print_rows(console, rows, f"{model} on {res['frames']} test frames of {data}")
        console.print(_verdict_line(res))
        return
    if run is not None:  # the depth task evaluates a trained run directory itself
        from donna_nas.tasks.depth.evaluate import evaluate_run

        evaluate_run(run, data=str(data) if data else None, gt=str(gt) if gt else None,
                     prior=str(prior) if prior else None)
        res = json.loads((run / "metrics.json").read_text())
        rows = {"model": res["metrics"], **res["baselines"]}
        if out is not None:
            write_json_atomic(out, res)
        if as_json:
            print(json.dumps(rows, indent=1, sort_keys=True))
            return
        _print_rows(console, rows, f"{res['frames']} test frames of {res['data']}")
        console.print(_verdict_line(res) + f"\nreport: {run / 'report.md'}")
        return
    if pred is None or gt is None:
        raise UserError("evaluate: give a RUN directory, or both --pred and --gt")
    if not pred.is_file():
        raise UserError(f"--pred {pred}: file not found")
    try:
        disps = np.load(pred, allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"--pred {pred}: not a plain .npy array ({exc})") from exc
    if disps.ndim == 4 and disps.shape[1] == 1:
        disps = disps[:, 0]
    if disps.ndim != 3:
        raise UserError(f"--pred {pred}: expected disparities of shape (N, H, W), got {disps.shape}")
    gts, meta = load_gt_depths(gt, allow_pickle=allow_pickle)
    if crop not in ("auto", "garg", "none"):
        raise UserError(f"--crop must be garg, none or auto (got '{crop}')")
    use_crop = meta.get("crop", "garg") if crop == "auto" else crop
    metrics, ratios = evaluate_disparities(disps, gts, crop=None if use_crop == "none" else use_crop,
                                           median_scaling=median_scaling, min_depth=min_depth,
                                           max_depth=max_depth, scale_factor=scale_factor)
    rows = {"model": metrics}
    prior_map = load_prior(prior) if prior else None
    if prior_map is not None and prior_map.shape != np.asarray(gts[0]).shape:
        raise UserError(f"--prior {prior}: shape {prior_map.shape} differs from the ground truth's {np.asarray(gts[0]).shape}")
    from donna_nas.tasks.depth.baselines import baseline_metrics

    rows.update(baseline_metrics(gts, prior_map, crop=None if use_crop == "none" else use_crop,
                                 median_scaling=median_scaling, min_depth=min_depth, max_depth=max_depth))
    if out is not None:
        write_json_atomic(out, {"metrics": metrics, "baselines": {k: v for k, v in rows.items() if k != "model"},
                                "images": len(gts), "crop": use_crop, "median_scaling": median_scaling,
                                "ratio_median": ratios["median"], "ratio_std": ratios["std"]})
    if as_json:
        print(json.dumps(rows, indent=1, sort_keys=True))
        return
    _print_rows(console, rows, f"{len(gts)} images, crop {use_crop}, median scaling {'on' if median_scaling else 'off'}")
    if median_scaling:
        console.print(f"scaling ratios: median {ratios['median']:.3f}, std {ratios['std']:.3f}")
    if prior_map is None:
        console.print("prior baseline: pass --prior FILE.npy (e.g. DATA/gt/train_prior.npy) to add it")


def _print_rows(console, rows: dict, title: str) -> None:
    from rich.table import Table

    from donna_nas.tasks.depth.metrics import METRIC_NAMES

    names = {"model": "model", "constant": "constant depth (no image)", "prior": "per-pixel prior (no image)"}
    table = Table(title=title)
    table.add_column("predictor")
    for k in METRIC_NAMES:
        table.add_column(k, justify="right")
    for name, m in rows.items():
        table.add_row(names.get(name, name), *[f"{m[k]:.4f}" for k in METRIC_NAMES])
    console.print(table)


def _verdict_line(res: dict) -> str:
    lost = [k for k, v in res.get("beats_baselines", {}).items() if not v]
    if not lost:
        return "the model beats the constant and per-pixel-prior baselines on abs_rel and Sq Rel"
    return f"the model does NOT beat the {' and '.join(lost)} baseline on both abs_rel and Sq Rel"


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
