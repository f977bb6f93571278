"""Train the depth teachers that ship with donna-nas, and measure X-Distill on them.

Recipe (all on the standard embedded world: version 2, 6 drives x 60 frames at 64x192, seed 0;
208 training samples, 116 test frames on held-out drives):

1. ``seg``: the segmentation teacher X-Distill distils from (``SegNet`` on the world's labels).
2. ``base-BB``: Monodepth2, BB = resnet18 | resnet50, from scratch, batch 4, lr 1e-4, for
   ``--base-steps`` steps: the step count at which the learning curve
   (``experiments/depth_curve.py``) first beats the per-pixel prior.
3. Branches from the base, at equal steps (``--branch-steps``), each warm-started from the base's
   depth *and* pose nets with a fresh optimizer and its own seed:
   ``md2-BB-sK`` (Monodepth2 continued) and ``xd-BB-wW-sK`` (X-Distill at weight W).
   The shipped ``synth-BB-monodepth2`` / ``synth-BB-xdistill`` are the seed-0 branches.
4. Every run is evaluated on the held-out drives of its world and on an unseen-seed world
   (``--unseen-seed``), each with the constant-depth and per-pixel-prior rows.

Every stage resumes: a killed invocation continues each run from its last checkpoint, and a
finished run or evaluation is not repeated. ``--report`` writes
experiments/results/teachers.{csv,md} and xdistill.{csv,md}; ``--ship`` copies the seed-0 branches
and the segmentation teacher into ``donna_nas/resources/models/`` (fp16, with model cards).

    OMP_NUM_THREADS=1 python experiments/train_teachers.py --backbone resnet50 --stages base branches
    OMP_NUM_THREADS=1 python experiments/train_teachers.py --backbone resnet18 --stages seg base branches \\
        --seeds 0 1 2 --weights 0.01
    python experiments/train_teachers.py --report --ship
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
WORLD = dict(drives=6, frames=60, size=(64, 192), seed=0)


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


def make_world(work: Path, seed: int) -> Path:
    from donna_nas.data.synth import synthesize

    h, w = WORLD["size"]
    out = work / f"world_v2_{WORLD['drives']}x{WORLD['frames']}_{h}x{w}_s{seed}"
    return synthesize(out, drives=WORLD["drives"], frames=WORLD["frames"], size=WORLD["size"], seed=seed,
                      progress=False, world_version=2)


def teacher_config(data: Path, backbone: str, seed: int, steps: int, **extra):
    """The one training configuration of every teacher run (constant lr, batch 4, Monodepth2 loss)."""
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.zoo import SHIPPED_TEACHER_POSE

    h, w = WORLD["size"]
    return DepthConfig(data=str(data), backbone=backbone, height=h, width=w, batch=4, lr=1e-4,
                       epochs=100000, lr_step=100000, seed=seed, checkpoint_every=50, max_steps=steps,
                       **SHIPPED_TEACHER_POSE, **extra)


def train(run: Path, cfg) -> None:
    """Train ``run`` to ``cfg.max_steps`` (resuming when it has a checkpoint)."""
    from donna_nas.tasks.depth.run import has_checkpoint, load_config
    from donna_nas.tasks.depth.train import train_depth

    model_json = run / "model.json"
    if model_json.is_file() and json.loads(model_json.read_text()).get("steps", 0) >= cfg.max_steps:
        return
    t0 = time.time()
    if has_checkpoint(run):
        train_depth(None, run, resume=True, overrides={"max_steps": cfg.max_steps}, progress=False, log=log)
    else:
        train_depth(cfg, run, progress=False, log=log)
    timing = run / "wall_seconds.json"
    spent = json.loads(timing.read_text())["seconds"] if timing.is_file() else 0.0
    timing.write_text(json.dumps({"seconds": spent + time.time() - t0}))
    assert load_config(run).max_steps is not None


def evaluate(run: Path, unseen: Path) -> dict:
    """Metrics (and baselines) on the run's own held-out drives and on the unseen-seed world."""
    from donna_nas.tasks.depth.evaluate import evaluate_run

    out = run / "teacher_eval.json"
    steps = json.loads((run / "model.json").read_text())["steps"]
    if out.is_file():
        res = json.loads(out.read_text())
        if res.get("steps") == steps:
            return res
    res = {"steps": steps}
    for key, data in (("own", None), ("unseen", str(unseen))):
        evaluate_run(run, data=data, report=key == "own")
        m = json.loads((run / "metrics.json").read_text())
        res[key] = {"metrics": m["metrics"], "baselines": m["baselines"], "beats": m["beats_baselines"],
                    "frames": m["frames"]}
    evaluate_run(run, report=True)  # leave the run's own metrics.json / report in place
    out.write_text(json.dumps(res, indent=1))
    return res


def train_seg(work: Path, data: Path, epochs: int) -> Path:
    from donna_nas.tasks.depth.seg_teacher import train_seg_teacher

    out = work / "seg_teacher.safetensors"
    if not out.is_file():
        meta = train_seg_teacher(data, out, size=WORLD["size"], epochs=epochs, batch=8, seed=0, progress=False)
        (work / "seg_teacher.json").write_text(json.dumps(meta, indent=1))
        log(f"segmentation teacher: {meta}")
    return out


def seg_accuracy(teacher_file: Path, data: Path) -> dict:
    """Pixel accuracy and mIoU of the segmentation teacher, over X-Distill's groups, on the test drives."""
    import torch

    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.tasks.depth.seg_teacher import load_seg_teacher
    from donna_nas.tasks.depth.xdistill import load_groups

    net, groups = load_seg_teacher(teacher_file), load_groups()
    ds = KittiRawDataset(str(data), str(data / "splits" / "test_files.txt"), size=WORLD["size"], frame_ids=(0,),
                         train=False, semantics=True, stereo=False, seed=0)
    G = groups.num_groups
    conf = np.zeros((G, G), np.int64)
    with torch.no_grad():
        for b in torch.utils.data.DataLoader(ds, batch_size=16):
            pred = groups(net(b["images"][:, 0]).argmax(1))
            true = groups(b["semantics"])
            ok = (true != 255) & (pred != 255)
            conf += np.bincount((true[ok] * G + pred[ok]).numpy(), minlength=G * G).reshape(G, G)
    iou = np.diag(conf) / np.maximum(conf.sum(0) + conf.sum(1) - np.diag(conf), 1)
    present = conf.sum(1) > 0
    return {"pixel_acc": float(np.diag(conf).sum() / max(conf.sum(), 1)), "miou": float(iou[present].mean()),
            "groups": list(groups.names)}


def run_name(kind: str, backbone: str, seed: int, weight: float | None = None) -> str:
    bb = backbone.replace("resnet", "r")
    if kind == "base":
        return f"base-{bb}"
    return f"md2-{bb}-s{seed}" if kind == "md2" else f"xd-{bb}-w{weight:g}-s{seed}"


def stages(a) -> None:
    import torch

    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    data, unseen = make_world(work, WORLD["seed"]), make_world(work, a.unseen_seed)
    runs = work / "runs"
    seg = work / "seg_teacher.safetensors"
    if "seg" in a.stages:
        train_seg(work, data, a.seg_epochs)
        acc = {"own": seg_accuracy(seg, data), "unseen": seg_accuracy(seg, unseen)}
        (work / "seg_eval.json").write_text(json.dumps(acc, indent=1))
        log(f"segmentation teacher accuracy: {acc}")
    for bb in a.backbone:
        base = runs / run_name("base", bb, 0)
        if "base" in a.stages:
            train(base, teacher_config(data, bb, 0, a.base_steps))
            log(f"{base.name}: {evaluate(base, unseen)['own']['metrics']}")
        if "branches" not in a.stages:
            continue
        for seed in a.seeds:
            arms = ([("md2", None)] if "md2" in a.arms else []) + ([("xd", w) for w in a.weights] if "xd" in a.arms else [])
            for kind, w in arms:
                run = runs / run_name(kind, bb, seed, w)
                extra = {"init_from": str(base)}
                if kind == "xd":
                    extra.update(xdistill=True, seg_teacher=str(seg), xdistill_weight=w)
                train(run, teacher_config(data, bb, seed, a.branch_steps, **extra))
                r = evaluate(run, unseen)
                log(f"{run.name}: abs_rel {r['own']['metrics']['abs_rel']:.4f} sq_rel {r['own']['metrics']['sq_rel']:.4f}")


def machine() -> str:
    from _provenance import cpu_model  # experiments/ is on sys.path when a script here runs

    return f"{cpu_model()}, {platform.machine()} {os.cpu_count()} cores, 1 torch thread per run, two runs at a time"


def report(a) -> None:
    import pandas as pd

    from donna_nas.runtime.io import write_text_atomic

    work = Path(a.work)
    rows, notes = [], []
    for run in sorted((work / "runs").iterdir()):
        ev = run / "teacher_eval.json"
        if not ev.is_file():
            continue
        r = json.loads(ev.read_text())
        cfg = __import__("yaml").safe_load((run / "config.yaml").read_text())
        info = json.loads((run / "model.json").read_text())
        base_steps = 0
        if cfg.get("init_from"):
            base_steps = json.loads((Path(cfg["init_from"]) / "model.json").read_text())["steps"]
        wall = json.loads((run / "wall_seconds.json").read_text())["seconds"] if (run / "wall_seconds.json").is_file() else float("nan")
        if (run / "adopted.json").is_file():  # trained by another script with the same configuration
            wall = float("nan")
            notes.append(f"{run.name}: {json.loads((run / 'adopted.json').read_text())['note']}.")
        for world in ("own", "unseen"):
            rows.append({"run": run.name, "backbone": cfg["backbone"], "method": "xdistill" if cfg["xdistill"] else "monodepth2",
                         "weight": cfg["xdistill_weight"] if cfg["xdistill"] else 0.0, "seed": cfg["seed"],
                         "world": world, "params": info["params"], "steps": base_steps + r["steps"],
                         "wall_s": wall if wall != wall else round(wall), **{k: r[world]["metrics"][k] for k in METRICS},
                         "beats_constant": r[world]["beats"]["constant"], "beats_prior": r[world]["beats"]["prior"]})
        for world in ("own", "unseen"):
            for b, m in r[world]["baselines"].items():
                if not any(x["run"] == b and x["world"] == world for x in rows):
                    rows.append({"run": b, "backbone": "-", "method": b, "weight": 0.0, "seed": 0, "world": world,
                                 "params": 0, "steps": 0, "wall_s": 0, **{k: m[k] for k in METRICS},
                                 "beats_constant": None, "beats_prior": None})
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    runs_name, xd_name = (f"{a.record}_runs", a.record) if a.record else ("teachers", "xdistill")
    df.to_csv(RESULTS / f"{runs_name}.csv", index=False)
    header = [f"Command: `python experiments/train_teachers.py ...` (see its docstring), then "
              f"`python experiments/train_teachers.py {shlex.join(sys.argv[1:])}`. Date {datetime.date.today()}; "
              f"work folder {work}.",
              f"World: version 2, {WORLD['drives']} drives x {WORLD['frames']} frames at {WORLD['size'][0]}x{WORLD['size'][1]}, "
              f"seed {WORLD['seed']} ('own': its held-out test drives); 'unseen': the same recipe at seed {a.unseen_seed}, "
              "which no model trained on. Batch 4, lr 1e-4. Machine: " + machine() + ".", ""]
    lines = ["# Depth teachers on the embedded world", ""] + header
    lines += ["| run | world | params | steps | abs_rel | sq_rel | rmse | a1 | beats constant | beats prior | wall s |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in df.sort_values(["world", "run"]).itertuples(index=False):
        yes = {True: "yes", False: "**no**", None: "–"}
        wall = "–" if not r.wall_s or r.wall_s != r.wall_s else int(r.wall_s)
        lines.append(f"| {r.run} | {r.world} | {r.params or '–'} | {r.steps or '–'} | {r.abs_rel:.3f} | {r.sq_rel:.3f} | "
                     f"{r.rmse:.3f} | {r.a1:.3f} | {yes[r.beats_constant]} | {yes[r.beats_prior]} | {wall} |")
    lines += [""] + [f"- {n}" for n in notes]
    seg = work / "seg_eval.json"
    if seg.is_file():
        se = json.loads(seg.read_text())
        lines += [f"- Segmentation teacher (`synth-segnet`, X-Distill's): group pixel accuracy {se['own']['pixel_acc']:.3f}, "
                  f"mIoU {se['own']['miou']:.3f} on the held-out drives; {se['unseen']['pixel_acc']:.3f} / "
                  f"{se['unseen']['miou']:.3f} on the unseen-seed world (groups: {', '.join(se['own']['groups'])})."]
    lines += ["- Branches (`md2-*`, `xd-*`) start from their backbone's base (`base-*`) with its depth and pose nets and a "
              "fresh optimizer; their steps count the base's. wall s: this run's own training time."]
    write_text_atomic(RESULTS / f"{runs_name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))

    # X-Distill against Monodepth2 at equal steps: mean ± std over seeds, per backbone and weight
    branch = df[(df.world == "own") & df.run.str.match(r"^(md2|xd)-")]
    out, md = [], ["# X-Distill against Monodepth2 at equal steps (held-out drives)", ""] + header
    md += ["| backbone | method | weight | seeds | abs_rel | sq_rel | a1 | sq_rel / Monodepth2 | target ≤ 0.90 | beats prior (every seed) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for b in ("constant", "prior"):  # the baselines, evaluated the same way on the same drives
        r = df[(df.world == "own") & (df.run == b)].iloc[0]
        md.append(f"| – | {b} (no image) | – | – | {r.abs_rel:.3f} | {r.sq_rel:.3f} | {r.a1:.3f} | – | – | – |")
    for bb, g in branch.groupby("backbone"):
        ref = g[g.method == "monodepth2"]
        for (method, w), h in g.groupby(["method", "weight"]):
            seeds = sorted(h.seed)
            paired = ref[ref.seed.isin(seeds)]
            ratio = h.sq_rel.mean() / paired.sq_rel.mean() if len(paired) else float("nan")
            row = {"backbone": bb, "method": method, "weight": w, "seeds": len(seeds),
                   **{f"{k}_mean": h[k].mean() for k in ("abs_rel", "sq_rel", "a1")},
                   **{f"{k}_std": h[k].std(ddof=1) if len(h) > 1 else float("nan") for k in ("abs_rel", "sq_rel", "a1")},
                   "sq_rel_ratio": ratio}
            out.append(row)
            verdict = "–" if method == "monodepth2" else ("met" if ratio <= 0.90 else "**missed**")
            pm = {k: f"{row[k + '_mean']:.3f} ± {row[k + '_std']:.3f}" if len(h) > 1 else f"{row[k + '_mean']:.3f}"
                  for k in ("abs_rel", "sq_rel", "a1")}
            beats_prior = "yes" if bool(h.beats_prior.all()) else "**no**"
            md.append(f"| {bb} | {method} | {w:g} | {len(seeds)} | {pm['abs_rel']} | {pm['sq_rel']} | {pm['a1']} | "
                      f"{ratio:.3f} | {verdict} | {beats_prior} |")
    pd.DataFrame(out).to_csv(RESULTS / f"{xd_name}.csv", index=False)
    write_text_atomic(RESULTS / f"{xd_name}.md", "\n".join(md) + "\n")
    print("\n".join(md))


def ship(a) -> None:
    """Copy the seed-0 branches and the segmentation teacher into the package, with cards."""
    from donna_nas.runtime.io import write_json_atomic
    from donna_nas.tasks.depth.zoo import write_shipped_depth_model, write_shipped_seg_teacher

    work = Path(a.work)
    seg_eval = json.loads((work / "seg_eval.json").read_text())
    seg_meta = json.loads((work / "seg_teacher.json").read_text())
    write_shipped_seg_teacher("synth-segnet", work / "seg_teacher.safetensors",
                              {"world": {**WORLD, "version": 2}, "train": seg_meta, "metrics": seg_eval,
                               "command": "python experiments/train_teachers.py --backbone resnet18 --stages seg"})
    for bb in a.backbone:
        for method, prefix in (("monodepth2", "md2"), ("xdistill", f"xd-{bb.replace('resnet', 'r')}-w{a.ship_weight:g}")):
            run = work / "runs" / (f"md2-{bb.replace('resnet', 'r')}-s0" if prefix == "md2" else f"{prefix}-s0")
            if not (run / "teacher_eval.json").is_file():
                log(f"skip {run.name}: not trained/evaluated")
                continue
            ev = json.loads((run / "teacher_eval.json").read_text())
            base = Path(__import__("yaml").safe_load((run / "config.yaml").read_text())["init_from"])
            steps = json.loads((base / "model.json").read_text())["steps"] + ev["steps"]
            name = f"synth-{bb}-{method}"
            card = {"world": {**WORLD, "version": 2, "unseen_seed": a.unseen_seed}, "steps": steps,
                    "recipe": f"Monodepth2 from scratch for {steps - ev['steps']} steps, then {ev['steps']} steps "
                              f"{'with X-Distill (weight %g, synth-segnet teacher)' % a.ship_weight if method == 'xdistill' else 'more'}; batch 4, lr 1e-4, seed 0",
                    "command": f"OMP_NUM_THREADS=1 python experiments/train_teachers.py --backbone {bb} --stages seg base branches "
                               f"--base-steps {steps - ev['steps']} --branch-steps {ev['steps']} --weights {a.ship_weight:g} "
                               f"&& python experiments/train_teachers.py --ship --backbone {bb}",
                    "metrics_fp32": ev}
            shipped = write_shipped_depth_model(name, run, card)
            fp16, change = fp16_metrics(name, ev, work, a.unseen_seed)  # measured on the file as shipped
            write_json_atomic(shipped.folder / "card.json",
                              {**shipped.card, "metrics_fp16": fp16, "fp16_max_rel_change": change})
            log(f"shipped {name}: fp16 changes every metric by at most {100 * change:.3f}%")


def fp16_metrics(name: str, fp32: dict, work: Path, unseen_seed: int) -> tuple[dict, float]:
    """The shipped (fp16) model's metrics on both worlds, and the largest relative change from fp32."""
    from donna_nas.tasks.depth.evaluate import evaluate_model
    from donna_nas.tasks.depth.run import load_model

    net, info = load_model(name)
    out, worst = {"steps": fp32["steps"]}, 0.0
    for key, seed in (("own", WORLD["seed"]), ("unseen", unseen_seed)):
        res, *_ = evaluate_model(net, info, str(make_world(work, seed)))
        out[key] = {"metrics": res["metrics"], "baselines": res["baselines"], "beats": res["beats_baselines"],
                    "frames": res["frames"]}
        for k, v in res["metrics"].items():
            ref = fp32[key]["metrics"][k]
            worst = max(worst, abs(v - ref) / max(abs(ref), 1e-12))
    return out, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", nargs="+", default=["resnet18"], choices=("resnet18", "resnet50"))
    ap.add_argument("--stages", nargs="+", default=["seg", "base", "branches"], choices=("seg", "base", "branches"))
    ap.add_argument("--base-steps", type=int, default=2250)
    ap.add_argument("--branch-steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--weights", type=float, nargs="*", default=[0.01], help="X-Distill weights of the branches")
    ap.add_argument("--arms", nargs="+", default=["md2", "xd"], choices=("md2", "xd"),
                    help="which branches to train (two processes may split a seed's arms between them)")
    ap.add_argument("--seg-epochs", type=int, default=20)
    ap.add_argument("--unseen-seed", type=int, default=1)
    ap.add_argument("--ship-weight", type=float, default=0.01, help="X-Distill weight of the shipped model")
    ap.add_argument("--work", default=str(Path.home() / "dn" / "teachers"))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--record", default=None, help="with --report: write experiments/results/NAME.{csv,md} (the "
                    "X-Distill table) and NAME_runs.{csv,md} instead of xdistill.* and teachers.* (the shipped ones')")
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args()
    if a.report or a.ship:
        if a.report:
            report(a)
        if a.ship:
            ship(a)
        return
    stages(a)


if __name__ == "__main__":
    sys.exit(main())
