"""DONNA for classification on scikit-learn's handwritten digits (real scans, upsampled), CPU scale.

Steps: write the digits as an ImageFolder dataset; train a ResNet18 teacher; ``build_supernet``
with ``task="classify"`` on the ``tiny`` space at the digits' size (BKD from the teacher's taps,
top-1 predictor from short KD finetunes); exact search against per-op ONNX Runtime latency
measured here (the ``search`` command); finetune the architecture with the best predicted top-1
(cross-entropy + KD, cosine, blockwise-distilled init) and, as a control, the same architecture
from random init without KD; export teacher and searched model to ONNX fp32 + INT8 and measure top-1 and batch-1 FPS.

    python experiments/classify_digits.py [--size 32] [--teacher-epochs 10] [--bkd-steps 200]
        [--archs 16] [--test 6] [--ft-steps 100] [--epochs 10] [--work /tmp/donna_classify_digits]

Writes experiments/results/classify_digits.{csv,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import shutil
import time
from pathlib import Path

import pandas as pd
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--bkd-steps", type=int, default=200)
    ap.add_argument("--archs", type=int, default=16)
    ap.add_argument("--test", type=int, default=6)
    ap.add_argument("--ft-steps", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--work", default="/tmp/donna_classify_digits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine's 2 cores are shared; one thread per process

    from donna_nas.data.imagefolder import write_digits_imagefolder
    from donna_nas.distill.pipeline import SupernetConfig, build_supernet
    from donna_nas.space import load_space
    from donna_nas.tasks.classify.export import export_run
    from donna_nas.tasks.classify.train import ClassifyConfig, train_classifier

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    s = args.size
    data = work / "digits"
    phases: dict[str, float] = {}
    t0 = time.time()
    counts = write_digits_imagefolder(data, s, args.seed)
    phases["data_s"] = time.time() - t0

    t0 = time.time()
    teacher = work / "teacher"
    train_classifier(ClassifyConfig(data=str(data), backbone="resnet18", height=s, width=s,
                                    epochs=args.teacher_epochs, kd_weight=0.0, seed=args.seed), teacher,
                     progress=False)
    phases["teacher_train_s"] = time.time() - t0

    t0 = time.time()
    space = dataclasses.replace(load_space("tiny"), input_size=(s, s))
    run = work / "supernet"
    cfg = SupernetConfig(teacher=str(teacher), data=str(data), task="classify", height=s, width=s,
                         train_frames=1024, val_frames=256, bkd_steps=args.bkd_steps, bkd_batch=32,
                         predictor_archs=args.archs, predictor_test=args.test, ft_steps=args.ft_steps,
                         seed=args.seed)
    build_supernet(space, run, cfg, progress=False)
    phases["build_supernet_s"] = time.time() - t0
    pred = json.loads((run / "predictor.json").read_text())

    t0 = time.time()
    from donna_nas.cli import main as cli

    try:  # the search command: per-op ONNX Runtime latency on this CPU, exact Pareto solver
        cli(["search", str(run), "--measure", "ort", "--size", f"{s}x{s}"])
    except SystemExit as exc:
        if exc.code:
            raise
    phases["search_s"] = time.time() - t0
    selected = json.loads((run / "selected.json").read_text())
    best = selected["arch"]

    runs = {"teacher ResNet18": teacher}
    t0 = time.time()
    kd = work / "searched_kd_bkd"
    train_classifier(ClassifyConfig(data=str(data), backbone=best, space=str(run), teacher=str(teacher),
                                    height=s, width=s, epochs=args.epochs, seed=args.seed), kd, progress=False)
    phases["finetune_searched_s"] = time.time() - t0
    runs["searched, BKD init + KD"] = kd
    t0 = time.time()
    scratch = work / "searched_scratch"
    train_classifier(ClassifyConfig(data=str(data), backbone=best, space=str(run / "space.yaml"),
                                    height=s, width=s, epochs=args.epochs, kd_weight=0.0, seed=args.seed),
                     scratch, progress=False)
    phases["finetune_scratch_s"] = time.time() - t0
    runs["searched, random init, no KD"] = scratch

    rows = []
    for name, r in runs.items():
        t0 = time.time()
        ex = export_run(r, str(data), repeats=50)
        phases[f"export_{r.name}_s"] = time.time() - t0
        info = json.loads((r / "model.json").read_text())
        m = json.loads((r / "metrics.json").read_text())
        macs = space.macs(space.decode(info["backbone"])) if info["backbone"] != "resnet18" else None
        rows.append({"model": name, "arch": info["backbone"], "params": info["params"], "macs": macs,
                     "top1": m["top1"], "top5": m["top5"], "top1_onnx_fp32": ex["fp32"]["top1"],
                     "top1_onnx_int8": ex["int8"]["top1"], "fps_fp32": ex["fp32"]["fps"],
                     "fps_int8": ex["int8"]["fps"]})
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / "classify_digits.csv", index=False, float_format="%.4f")
    ptab = pd.read_csv(run / "tables" / "predictor_train.csv")
    pev = pd.read_csv(run / "tables" / "predictor_eval.csv")
    print(df.drop(columns=["arch"]).to_string(index=False))
    cmd = (f"python experiments/classify_digits.py --size {s} --teacher-epochs {args.teacher_epochs} "
           f"--bkd-steps {args.bkd_steps} --archs {args.archs} --test {args.test} --ft-steps {args.ft_steps} "
           f"--epochs {args.epochs}")
    lines = [
        "# Classification on the shipped digits (DONNA pipeline, CPU scale)", "",
        f"Command: `{cmd}`  ", f"Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; machine: 2-core CPU "
        f"({platform.processor() or platform.machine()}), one torch thread, shared with other jobs running at "
        "the same time (timings are indicative only).  ",
        f"Data: scikit-learn's 1,797 handwritten digit scans (8×8) upsampled to {s}×{s}; stratified split "
        f"train {counts['train']} / val {counts['val']} / test {counts['test']}; 10 classes, chance 10%. "
        "Accuracies below are on the test split.", "",
        "| model | params | MACs | top-1 | top-5 | ONNX fp32 top-1 | ONNX INT8 top-1 | FPS fp32 | FPS INT8 |",
        "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        macs = f"{r['macs'] / 1e6:.2f}M" if r["macs"] else "—"
        lines.append(f"| {r['model']} | {r['params']:,} | {macs} | {r['top1']:.4f} | {r['top5']:.4f} | "
                     f"{r['top1_onnx_fp32']:.4f} | {r['top1_onnx_int8']:.4f} | {r['fps_fp32']:.0f} | {r['fps_int8']:.0f} |")
    lines += ["", f"Searched architecture (best predicted top-1 on the exact Pareto front of "
              f"`donna-nas search RUN --measure ort --size {s}x{s}`, per-op ONNX Runtime latency on this CPU; "
              f"predicted top-1 {selected['predicted_metric']:.4f}, {selected['latency_ms']:.3f} ms, front of "
              f"{selected['front_size']}): `{best}`", "",
              f"Predictor: ridge on block NSRs fitted to {args.archs} architectures finetuned {args.ft_steps} steps "
              f"from the distilled blocks (KD from the teacher); Kendall τ cross-validated "
              f"{pred.get('cv_kendall_tau', float('nan')):.3f}, on {args.test} held-out architectures "
              f"{pred.get('test_kendall_tau', float('nan')):.3f}. Short-finetune top-1 of those architectures: "
              f"{ptab['top1'].min():.3f} to {ptab['top1'].max():.3f} (mean {ptab['top1'].mean():.3f}).", "",
              "| predictor model | CV Kendall τ | held-out Kendall τ |", "|---|---|---|",
              *[f"| {r.model} | {r.cv_tau:.3f} | {r.test_tau:.3f} |" for r in pev.itertuples()], "",
              f"Settings: teacher {args.teacher_epochs} epochs (AdamW 2e-3, cosine, label smoothing 0.1); BKD "
              f"{args.bkd_steps} steps per block supernet on 1,024 training images; finetunes {args.epochs} epochs "
              "(batch 64, CE + KD weight 0.5 at T=4). FPS: ONNX Runtime, batch 1, one thread.", "",
              "Phase times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()), ""]
    (RESULTS / "classify_digits.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
