"""How many steps does the searched encoder's final finetune need? A learning curve of the
quickstart's last training stage, per learning rate, against the teacher and both baselines.

Takes a finished quickstart folder (``--quickstart``): its ``searched/config.yaml`` (the selected
encoder, warm-started from its distilled blocks, output distillation from the teacher +
self-supervision + X-Distill) is re-run from step 0 for each ``--lrs`` value with a constant
learning rate and each ``--seeds`` training seed (the seed is what separates a schedule's effect
from run-to-run noise), and evaluated on the quickstart's test split at each of ``--milestones``
steps. Resumes: each milestone continues the run's checkpoint, and a finished milestone is read
back, so seeds can run as separate processes and a last call with all of them writes the table.
Writes experiments/results/RECORD.{csv,md} (``--record``, default final_finetune_curve).

    OMP_NUM_THREADS=1 python experiments/final_finetune_curve.py --quickstart runs/quickstart
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quickstart", default="runs/quickstart")
    ap.add_argument("--lrs", default="1e-4,5e-4")
    ap.add_argument("--milestones", default="100,200,400")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    ap.add_argument("--lr-step", type=int, default=None,
                    help="epochs before the lr drops 10x (default: constant lr)")
    ap.add_argument("--work", default=str(Path.home() / "dn" / "final_curve"))
    ap.add_argument("--xdistill-scales", default=None,
                    help="decoder scales X-Distill reads, comma-separated (default: the quickstart's)")
    ap.add_argument("--joins", default="bridged",
                    help="how the distilled blocks are joined at step 0, comma-separated: bridged (the default "
                         "since the bridges) and/or raw (before them; donna_nas.distill.assemble)")
    ap.add_argument("--int8", action="store_true",
                    help="also export each run at its last milestone to static INT8 (16 calibration frames, as the "
                         "quickstart) and report its Sq Rel through ONNX Runtime beside fp32 (no FPS)")
    ap.add_argument("--record", default="final_finetune_curve", help="results file name")
    ap.add_argument("--load", default="shared with another job", help="what else ran on the machine")
    a = ap.parse_args()

    import pandas as pd

    from donna_nas.runtime.io import write_text_atomic
    from donna_nas.tasks.depth.evaluate import beats, evaluate_run
    from donna_nas.tasks.depth.run import DepthConfig, has_checkpoint, load_config
    from donna_nas.tasks.depth.train import train_depth

    qs = Path(a.quickstart)
    base = load_config(qs / "searched")
    teacher = json.loads((qs / "teacher" / "metrics.json").read_text())
    bases = teacher["baselines"]
    milestones = [int(m) for m in a.milestones.split(",")]
    rows = [{"model": "teacher", "join": None, "lr": None, "seed": None, "steps": None, **teacher["metrics"]}]
    rows += [{"model": k, "join": None, "lr": None, "seed": None, "steps": None, **v} for k, v in bases.items()]
    joins = a.joins.split(",")
    if set(joins) - {"bridged", "raw"}:
        raise SystemExit(f"--joins {a.joins}: use bridged and/or raw")
    seeds = [int(v) for v in a.seeds.split(",")]
    xd = {} if a.xdistill_scales is None else {"xdistill_scales": [int(v) for v in a.xdistill_scales.split(",")]}
    xd_read = xd.get("xdistill_scales", base.xdistill_scales)
    for lr, seed, join in ((float(v), s, j) for v in a.lrs.split(",") for s in seeds for j in joins):
        name = f"lr{lr:g}" + (f"_step{a.lr_step}" if a.lr_step else "") + (f"_xd{a.xdistill_scales.replace(',', '')}"
                                                                             if a.xdistill_scales else "")
        name += "_raw" if join == "raw" else ""
        run = Path(a.work) / (name if seed == base.seed else f"{name}_seed{seed}")
        for m in milestones:
            snap = run / f"metrics_{m}.json"
            if not snap.is_file():
                cfg: DepthConfig = dataclasses.replace(base, lr=lr, lr_step=a.lr_step or 10 ** 6, epochs=10 ** 6, max_steps=m, **xd,
                                                       checkpoint_every=50, seed=seed, bridge=join == "bridged")
                train_depth(cfg, run, resume=has_checkpoint(run), progress=False)
                evaluate_run(run, report=False)
                snap.write_text((run / "metrics.json").read_text())
            met = json.loads(snap.read_text())["metrics"]
            row = {"model": "searched", "join": join, "lr": lr, "seed": seed, "steps": m, **met}
            if a.int8 and m == milestones[-1]:
                row.update(int8_metrics(run))
            rows.append(row)
            print(f"{join} lr {lr:g} seed {seed} step {m}: abs_rel {met['abs_rel']:.4f} sq_rel {met['sq_rel']:.4f}", flush=True)
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / f"{a.record}.csv", index=False, float_format="%.4f")
    t = teacher["metrics"]
    cmd = shlex.join(["python", "experiments/final_finetune_curve.py", *sys.argv[1:]])
    lines = ["# Final finetune of the searched encoder: learning curve", "",
             f"Command: `OMP_NUM_THREADS=1 {cmd}`. Date {datetime.date.today()}. Machine: {platform.machine()} "
             f"{os.cpu_count()} cores, 1 torch thread ({a.load}).", "",
             f"Scale: the quickstart's selected encoder `{json.loads((qs / 'supernet' / 'selected.json').read_text())['arch']}` "
             f"(from its distilled blocks), "
             f"{base.height}x{base.width}, batch {base.batch}, "
             f"{f'lr x0.1 after {a.lr_step} epochs' if a.lr_step else 'constant lr'}, output distillation from "
             f"`{base.distill_from}` (weight {base.distill_weight:g}) + self-supervision + X-Distill "
             f"(weight {base.xdistill_weight:g}, on {'every scale' if xd_read is None else 'scales ' + ','.join(map(str, xd_read))}); evaluated on the quickstart's held-out test drives.", "",
             "| model | blocks joined | lr | seed | steps | abs_rel | Sq Rel | Sq Rel / teacher | beats constant | beats prior |"
             + (" Sq Rel ORT fp32 / int8 | INT8 cost |" if a.int8 else ""),
             "|---|---|---|---:|---:|---:|---:|---:|---|---|" + ("---:|---:|" if a.int8 else "")]
    for r in df.to_dict("records"):
        lr = "–" if r["lr"] is None or r["lr"] != r["lr"] else f"{r['lr']:g}"
        steps = "–" if r["steps"] is None or r["steps"] != r["steps"] else f"{int(r['steps'])}"
        seed = "–" if r["seed"] is None or r["seed"] != r["seed"] else f"{int(r['seed'])}"
        yes = lambda b: "–" if r["model"] in bases else ("yes" if beats(r, bases[b]) else "**no**")  # noqa: E731
        join = r["join"] if isinstance(r["join"], str) else "–"
        lines.append(f"| {r['model']} | {join} | {lr} | {seed} | {steps} | {r['abs_rel']:.4f} | {r['sq_rel']:.4f} | "
                     f"{r['sq_rel'] / t['sq_rel']:.2f} | {yes('constant')} | {yes('prior')} |"
                     + (int8_cells(r) if a.int8 else ""))
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def int8_metrics(run: Path) -> dict:
    """Sq Rel of RUN's exported fp32 and static INT8 models through ONNX Runtime (its export is
    reused when RUN/export/export.json is newer than the model)."""
    from donna_nas.export.pipeline import export_run, load_export

    done = run / "export" / "export.json"
    if not (done.is_file() and done.stat().st_mtime >= (run / "model.safetensors").stat().st_mtime):
        export_run(run, int8=True, calib=16, fps_repeats=1)
    e = load_export(run)
    return {"ort_sq_rel_fp32": e["fp32"]["metrics"]["sq_rel"], "ort_sq_rel_int8": e["int8"]["metrics"]["sq_rel"]}


def int8_cells(r: dict) -> str:
    if r.get("ort_sq_rel_int8") is None or r["ort_sq_rel_int8"] != r["ort_sq_rel_int8"]:
        return " – | – |"
    f, q = r["ort_sq_rel_fp32"], r["ort_sq_rel_int8"]
    return f" {f:.4f} / {q:.4f} | {100 * (q / f - 1):+.1f}% |"


if __name__ == "__main__":
    main()
