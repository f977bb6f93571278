"""Monodepth2 vs X-Distill (ResNet18) on the synthetic world at a CPU-feasible scale.

Steps: render the synthetic world (KITTI raw layout), train the segmentation teacher on its labels
(stand-in for the paper's pretrained segmenter), then for each seed train Monodepth2 and X-Distill
with the same budget (epochs, batch, lr, seed) and evaluate both on the Eigen-format test split.
Writes experiments/results/depth_baselines.{csv,md}: mean ± std over seeds of the seven metrics,
plus a median-scaled constant-depth predictor as the "learned nothing" reference.

    python experiments/depth_baselines.py [--size 64x192] [--drives 6] [--frames 50] [--epochs 8]
                                          [--batch 4] [--seeds 0 1] [--work /tmp/donna_depth_baselines]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from donna_nas.runtime.io import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lr-step", type=int, default=3)
    ap.add_argument("--xdistill-weight", type=float, default=0.1)
    ap.add_argument("--teacher-epochs", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--work", default="/tmp/donna_depth_baselines")
    ap.add_argument("--tag", default="depth_baselines")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 avoids OpenMP spin-wait collapse when other jobs share the cores")
    a = ap.parse_args()

    import torch

    from donna_nas.cli.common import parse_size
    from donna_nas.data.synth import synthesize
    from donna_nas.tasks.depth.evaluate import evaluate_run
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.seg_teacher import train_seg_teacher
    from donna_nas.tasks.depth.train import train_depth

    torch.set_num_threads(a.threads)
    h, w = parse_size(a.size)
    work = Path(a.work)
    t_all = time.time()
    data = synthesize(work / f"world_{a.drives}x{a.frames}_{h}x{w}", drives=a.drives, frames=a.frames, size=(h, w),
                      seed=0, progress=False)
    n_train = len((data / "splits" / "train_files.txt").read_text().splitlines())
    n_test = len((data / "splits" / "test_files.txt").read_text().splitlines())
    teacher = work / f"seg_teacher_{h}x{w}.safetensors"
    t0 = time.time()
    tmeta = train_seg_teacher(data, teacher, (h, w), epochs=a.teacher_epochs, batch=8, seed=0, progress=False)
    teacher_s = time.time() - t0
    print(f"seg teacher: pixel acc {tmeta['last_epoch_pixel_acc']:.3f} in {teacher_s:.0f}s", flush=True)

    rows = []
    const = None
    for seed in a.seeds:
        for method in ("monodepth2", "xdistill"):
            run = work / f"runs/{method}_s{seed}"
            if run.exists():
                import shutil

                shutil.rmtree(run)
            cfg = DepthConfig(data=str(data), backbone="resnet18", height=h, width=w, epochs=a.epochs, batch=a.batch,
                              lr=a.lr, lr_step=a.lr_step, seed=seed, checkpoint_every=10_000,
                              xdistill=method == "xdistill", seg_teacher=str(teacher) if method == "xdistill" else None,
                              xdistill_weight=a.xdistill_weight)
            t0 = time.time()
            res = train_depth(cfg, run, progress=False, log=None)
            train_s = time.time() - t0
            m = evaluate_run(run, report=False)
            result = json.loads((run / "metrics.json").read_text())
            const = result["constant_depth_baseline"]
            row = {"method": method, "seed": seed, "steps": res["step"], "train_s": round(train_s, 1), **m}
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    agg = df.groupby("method")[list(METRICS)].agg(["mean", "std"])
    out_rows = []
    for method in ("monodepth2", "xdistill"):
        r = {"method": method, "seeds": len(a.seeds)}
        for k in METRICS:
            r[f"{k}_mean"] = agg.loc[method, (k, "mean")]
            r[f"{k}_std"] = agg.loc[method, (k, "std")] if len(a.seeds) > 1 else float("nan")
        out_rows.append(r)
    r = {"method": "constant_depth", "seeds": 0}
    for k in METRICS:
        r[f"{k}_mean"], r[f"{k}_std"] = const[k], 0.0
    out_rows.append(r)
    summary = pd.DataFrame(out_rows)
    with_path = RESULTS / f"{a.tag}.csv"
    write_text_atomic(with_path, summary.to_csv(index=False))
    write_text_atomic(RESULTS / f"{a.tag}_runs.csv", df.to_csv(index=False))

    def fmt(method: str) -> str:
        s = summary[summary.method == method].iloc[0]
        cells = [f"{s[k + '_mean']:.4f} ± {s[k + '_std']:.4f}" if method != "constant_depth" else f"{s[k + '_mean']:.4f}"
                 for k in METRICS]
        return f"| {method} | " + " | ".join(cells) + " |"

    md_sq = summary.set_index("method")["sq_rel_mean"]
    change = (md_sq["xdistill"] - md_sq["monodepth2"]) / md_sq["monodepth2"] * 100
    per_seed = df.pivot(index="seed", columns="method", values="sq_rel")
    seed_changes = ((per_seed["xdistill"] - per_seed["monodepth2"]) / per_seed["monodepth2"] * 100).round(1).tolist()
    total_s = time.time() - t_all
    cmd = "python experiments/depth_baselines.py " + " ".join(sys.argv[1:])
    md = f"""# Monodepth2 vs X-Distill, ResNet18, synthetic world

Command: `{cmd.strip()}`
Date: {datetime.date.today()}; machine: 2-core CPU ({platform.machine()}), shared with other
engineers' jobs at the time (1-min load average at the end: {os.getloadavg()[0]:.1f}); torch threads {a.threads}. Total wall time {total_s / 60:.1f} min.

Scale: synthetic world (seed 0), {a.drives} drives × {a.frames} frames at {h}x{w}; {n_train} training frames,
{n_test} test frames (Eigen-format split, held-out drives, velodyne ground truth). Randomly initialised
ResNet18 encoders (no ImageNet weights), {a.epochs} epochs, batch {a.batch}, Adam lr {a.lr} (×0.1 after
epoch {a.lr_step}), seeds {a.seeds}; X-Distill weight {a.xdistill_weight}, shipped 7-group mapping,
teacher = `train-seg-teacher` U-Net ({a.teacher_epochs} epochs, train pixel accuracy
{tmeta['last_epoch_pixel_acc']:.3f}, {teacher_s:.0f} s). Same steps, data order and seeds for both methods.
Eigen protocol: Garg crop, 1e-3 < gt < 80 m, per-image median scaling, per-image mean.

| method | {' | '.join(METRICS)} |
|---|{'---:|' * len(METRICS)}
{fmt('monodepth2')}
{fmt('xdistill')}
{fmt('constant_depth')}

Mean ± std over {len(a.seeds)} seed(s). `constant_depth` = one depth for every pixel, median-scaled per
image (the score of a network that learned nothing).

Sq Rel change X-Distill vs Monodepth2: {change:+.1f}% on the mean (per seed: {seed_changes}).
Per-run rows (steps, training seconds): `{a.tag}_runs.csv`.
"""
    write_text_atomic(RESULTS / f"{a.tag}.md", md)
    print(md)


if __name__ == "__main__":
    main()
