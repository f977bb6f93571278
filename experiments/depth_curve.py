"""Learning curve of Monodepth2 (ResNet18, from scratch) with the baselines that separate learning from layout.

For one world (``--world new``: the default version-2 world; ``old``: version 1) it trains
Monodepth2 self-supervised, or (``--mode supervised``) the same depth network on the velodyne ground
truth with a scale-invariant log loss (the upper bound), and evaluates the Eigen-protocol metrics on
the held-out test drives at each milestone (``--mode oracle-pose``: Monodepth2's loss with the
true relative poses instead of the pose network, a diagnostic) (250, 500, 1k, 2k, 4k … steps). Every run resumes: a
killed invocation continues from its last milestone checkpoint. ``--report`` collects all curves
under ``--work`` into experiments/results/depth_curve.{csv,md,png} with the constant-depth and
per-pixel-prior rows.

    python experiments/depth_curve.py --world new --mode selfsup --milestones 250 500 1000 2000
    python experiments/depth_curve.py --world new --mode supervised --milestones 250 500 1000 2000
    python experiments/depth_curve.py --world old --mode selfsup --milestones 250 500 1000
    python experiments/depth_curve.py --report
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _provenance import code_commit, cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def world(work: Path, which: str, size, drives: int, frames: int, seed: int) -> Path:
    from donna_nas.data.synth import synthesize

    h, w = size
    version = 2 if which == "new" else 1
    return synthesize(work / f"world_v{version}_{drives}x{frames}_{h}x{w}_s{seed}", drives=drives, frames=frames,
                      size=size, seed=seed, progress=False, world_version=version)


def silog(pred: "torch.Tensor", gt: "torch.Tensor", lam: float = 0.85) -> "torch.Tensor":
    """Scale-invariant log loss on valid (gt > 0) pixels: sqrt(mean d^2 - lam mean(d)^2), d = log pred - log gt."""
    import torch

    m = gt > 0
    d = torch.log(pred[m]) - torch.log(gt[m])
    return torch.sqrt(torch.clamp((d**2).mean() - lam * d.mean() ** 2, min=1e-8)) * 10


def fit_resumable(cfg, run: Path, steps: int, net, opt, ds, loss_of, name: str, log) -> None:
    """Train ``net`` (saved as the run's model) to ``steps`` optimizer steps with ``loss_of(batch)``,
    continuing from RUN's checkpoint when there is one; the sample order is the trainer's
    (``epoch_batches``), so a resumed curve sees the same batches as an uninterrupted one."""
    from torch.utils.data import DataLoader

    from donna_nas.tasks.depth.run import checkpoint_path, load_checkpoint, save_checkpoint, save_config, save_model
    from donna_nas.tasks.depth.train import epoch_batches

    step = 0
    if checkpoint_path(run).exists():
        step = int(load_checkpoint(run, net, opt)["step"])
    else:
        run.mkdir(parents=True, exist_ok=True)
        save_config(run, cfg)
    n_batches = len(epoch_batches(len(ds), cfg.batch, cfg.seed, 0))
    net.train()
    t0 = time.time()
    while step < steps:
        epoch, within = divmod(step, n_batches)
        ds.set_epoch(epoch)
        for b in DataLoader(ds, batch_sampler=epoch_batches(len(ds), cfg.batch, cfg.seed, epoch)[within:]):
            loss = loss_of(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                log(f"{name} step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
            if step >= steps:
                break
    save_checkpoint(run, net, opt, {"step": step})
    save_model(run, net, cfg, {"steps": step, "complete": True})


def train_supervised(cfg, run: Path, steps: int, log) -> None:
    """The same depth network as Monodepth2's, trained on velodyne depth (resumable at checkpoints)."""
    import torch
    import torch.nn.functional as F

    from donna_nas.data.gt import gt_for_entry, resolve_protocol
    from donna_nas.data.kitti import KittiRawDataset
    from donna_nas.tasks.depth.geometry import disp_to_depth
    from donna_nas.tasks.depth.train import build_depth_net

    torch.manual_seed(cfg.seed)
    root = Path(cfg.data)
    ds = KittiRawDataset(cfg.data, str(root / "splits" / "train_files.txt"), size=(cfg.height, cfg.width),
                         frame_ids=(0,), train=True, semantics=False, stereo=False, seed=cfg.seed)
    proto, cache = resolve_protocol(root, "auto"), {}
    gts = torch.from_numpy(np.stack([gt_for_entry(root, e, proto, cache) for e in ds.entries]))
    net = build_depth_net(cfg)

    def loss_of(b):
        gt = gts[b["index"]]
        gt = torch.where(b["flipped"][:, None, None], gt.flip(-1), gt)[:, None]
        loss = 0
        for disp in net.multiscale(b["images_aug"][:, 0]):
            up = F.interpolate(disp, size=gt.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + silog(disp_to_depth(up, cfg.min_depth, cfg.max_depth)[1], gt)
        return loss

    fit_resumable(cfg, run, steps, net, torch.optim.Adam(net.parameters(), lr=cfg.lr), ds, loss_of, "supervised", log)


def train_oracle_pose(cfg, run: Path, steps: int, log) -> None:
    """Monodepth2's loss with the true relative poses (poses.txt) instead of the pose network: a
    diagnostic that separates learning depth from learning ego-motion (resumable at checkpoints)."""
    import torch

    from donna_nas.tasks.depth.train import DepthTrainer, make_optimizer, make_train_dataset

    torch.manual_seed(cfg.seed)
    ds = make_train_dataset(cfg, semantics=False)
    trainer = DepthTrainer(cfg).train()
    cache: dict[str, np.ndarray] = {}

    def cam_to_frame0(folder: str, frame: int) -> np.ndarray:
        if folder not in cache:
            rows = np.loadtxt(Path(cfg.data) / folder / "poses.txt").reshape(-1, 3, 4)
            P = np.tile(np.eye(4), (len(rows), 1, 1))
            P[:, :3] = rows
            cache[folder] = P
        return cache[folder][frame]

    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])  # a horizontally flipped image sees the mirrored motion

    def loss_of(b):
        poses = {}
        for f in cfg.frame_ids[1:]:
            mats = []
            for k, idx in enumerate(b["index"].tolist()):
                e = ds.entries[idx]
                rel = np.linalg.inv(cam_to_frame0(e.folder, e.frame + f)) @ cam_to_frame0(e.folder, e.frame)
                mats.append(mirror @ rel @ mirror if bool(b["flipped"][k]) else rel)
            poses[f] = torch.tensor(np.stack(mats), dtype=torch.float32)
        disps = trainer.depth.multiscale(b["images_aug"][:, 0])
        return trainer.loss_fn(disps, b["images"], b["K"], b["inv_K"], poses)[0]

    fit_resumable(cfg, run, steps, trainer.depth, make_optimizer(list(trainer.depth.parameters()), cfg.lr), ds,
                  loss_of, "oracle-pose", log)


def curve(a) -> None:
    import torch

    from donna_nas.tasks.depth.evaluate import evaluate_run
    from donna_nas.tasks.depth.run import DepthConfig, checkpoint_path
    from donna_nas.tasks.depth.train import train_depth

    torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.size.split("x"))
    work = Path(a.work[0])
    data = world(work, a.world, (h, w), a.drives, a.frames, a.seed)
    name = (f"{a.world}_{a.mode}_s{a.seed}" + ("" if a.mixed_precision == "off" else f"_{a.mixed_precision}")
            + ("" if a.warp == "exact" else f"_warp-{a.warp}") + ("_pose-per-pair" if a.pose_per_pair else "")
            + ("" if a.pose_downsample == 1 else f"_pose-ds{a.pose_downsample}"))
    run = work / "runs" / name
    log_path = work / f"{name}.json"
    done = json.loads(log_path.read_text()) if log_path.exists() else {"rows": [], "seconds": 0.0}
    have = {r["step"] for r in done["rows"]}
    cfg = DepthConfig(data=str(data), backbone="resnet18", height=h, width=w, batch=a.batch, lr=a.lr,
                      epochs=100000, lr_step=100000, seed=a.seed, checkpoint_every=50,
                      mixed_precision=a.mixed_precision, warp=a.warp, pose_batch_pairs=not a.pose_per_pair,
                      pose_downsample=a.pose_downsample)
    for m in a.milestones:
        if m in have:
            continue
        t0 = time.time()
        if a.mode == "supervised":
            train_supervised(cfg, run, m, lambda s: print(s, flush=True))
        elif a.mode == "oracle-pose":
            train_oracle_pose(cfg, run, m, lambda s: print(s, flush=True))
        else:
            resume = checkpoint_path(run).exists()
            cfg.max_steps = m
            train_depth(None if resume else cfg, run, resume=resume, overrides={"max_steps": m} if resume else None,
                        progress=False, log=lambda s: print(s, flush=True))
        done["seconds"] += time.time() - t0
        evaluate_run(run, report=False)
        res = json.loads((run / "metrics.json").read_text())
        row = {"step": m, **{k: res["metrics"][k] for k in METRICS}}
        done["rows"].append(row)
        done["baselines"] = res["baselines"]
        done.update(world=a.world, mode=a.mode, seed=a.seed, mixed_precision=a.mixed_precision, warp=a.warp,
                    pose_batch_pairs=not a.pose_per_pair, pose_downsample=a.pose_downsample, size=[h, w], drives=a.drives, frames=a.frames,
                    batch=a.batch, lr=a.lr, train_samples=len((data / "splits" / "train_files.txt").read_text().split("\n")) - 1,
                    test_frames=res["frames"], machine=f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores, {a.threads} torch thread")
        log_path.write_text(json.dumps(done, indent=1))
        print(f"{name} step {m}: abs_rel {row['abs_rel']:.3f} sq_rel {row['sq_rel']:.3f} a1 {row['a1']:.3f} | "
              f"prior {res['baselines']['prior']['abs_rel']:.3f}/{res['baselines']['prior']['sq_rel']:.3f} "
              f"constant {res['baselines']['constant']['abs_rel']:.3f} ({done['seconds']:.0f}s)", flush=True)


RATIO_TARGET = 1.5  # self-supervised abs_rel at most this times the supervised bound's


def ratio_lines(curves: list[dict]) -> list[str]:
    """Self-supervised against the supervised bound at equal steps, per seed and on the seeds' mean,
    and at each step whether the self-supervised network beats the per-pixel prior."""
    plain = [c for c in curves if c.get("mixed_precision", "off") == "off" and c.get("warp", "exact") == "exact"]
    supervised = {(c["world"], c.get("seed", 0)): c for c in plain if c["mode"] == "supervised"}
    # a self-supervised curve of either pose form pairs with the supervised curve of its world and seed;
    # the batched form is named in the world column so the two never overwrite each other
    pairs = {(c["world"] + _pose_tags(c), c.get("seed", 0)):
             (c, supervised[(c["world"], c.get("seed", 0))]) for c in plain
             if c["mode"] == "selfsup" and (c["world"], c.get("seed", 0)) in supervised}
    if not pairs:
        return []

    def verdict(ratio: float) -> str:
        return "met" if ratio <= RATIO_TARGET else "**missed**"

    out = ["## Self-supervised against the supervised bound", "",
           f"abs_rel ratio self-supervised / supervised at equal steps (target ≤ {RATIO_TARGET}×); "
           "'mean' divides the mean abs_rels of the seeds that reached that step.", "",
           f"| world | seed | step | self-supervised abs_rel | supervised abs_rel | ratio | ≤ {RATIO_TARGET}× | beats the prior (abs_rel and Sq Rel) |",
           "|---|---|---:|---:|---:|---:|---|---|"]
    for world in sorted({w for w, _ in pairs}):
        seeds = sorted(s for w, s in pairs if w == world)
        rows = {}  # seed -> step -> (self-supervised row, supervised row)
        for seed in seeds:
            ss, sup = pairs[(world, seed)]
            a, b = {r["step"]: r for r in ss["rows"]}, {r["step"]: r for r in sup["rows"]}
            rows[seed] = {st: (a[st], b[st]) for st in sorted(set(a) & set(b))}
            prior = ss["baselines"]["prior"]
            for st, (x, y) in rows[seed].items():
                ratio = x["abs_rel"] / y["abs_rel"]
                beats = x["abs_rel"] < prior["abs_rel"] and x["sq_rel"] < prior["sq_rel"]
                out.append(f"| {world} | {seed} | {st} | {x['abs_rel']:.3f} | {y['abs_rel']:.3f} | {ratio:.2f} | "
                           f"{verdict(ratio)} | {'yes' if beats else 'no'} |")
        for st in sorted({st for r in rows.values() for st in r}):
            have = [s for s in seeds if st in rows[s]]
            if len(have) < 2:
                continue
            m_ss = sum(rows[s][st][0]["abs_rel"] for s in have) / len(have)
            m_sup = sum(rows[s][st][1]["abs_rel"] for s in have) / len(have)
            ratio = m_ss / m_sup
            out.append(f"| {world} | mean of {', '.join(map(str, have))} | {st} | {m_ss:.3f} | {m_sup:.3f} | {ratio:.2f} | "
                       f"{verdict(ratio)} | – |")
    return out + [""]


def _pose_tags(curve: dict) -> str:
    """How a self-supervised curve ran its pose net, for labels: batched pairs, a downsampled input."""
    ds = curve.get("pose_downsample", 1)
    return ((" (pose pairs batched)" if curve.get("pose_batch_pairs") else "")
            + (f" (pose net at 1/{ds} size)" if ds != 1 else ""))


def _with_pose_batching(path: Path, curve: dict) -> dict:
    """``curve`` with ``pose_batch_pairs`` set: from the curve itself, else from its run's config.yaml
    (curves written before the field recorded it), else False (the trainer had only per-pair calls)."""
    if "pose_batch_pairs" not in curve:
        import yaml

        config = path.parent / "runs" / path.stem / "config.yaml"
        stored = yaml.safe_load(config.read_text()) if config.is_file() else {}
        curve["pose_batch_pairs"] = bool((stored or {}).get("pose_batch_pairs", False))
    return curve


def report(a) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from donna_nas.runtime.io import write_text_atomic

    curves = [_with_pose_batching(p, json.loads(p.read_text())) for w in a.work for p in sorted(Path(w).glob("*_s*.json"))]
    rows = []
    seed_of = {}  # (world, model label) -> world seed, to colour a curve like its baselines
    for c in curves:
        seed = c.get("seed", 0)
        tags = "" if c.get("mixed_precision", "off") == "off" else f" ({c['mixed_precision']} autocast)"
        tags += "" if c.get("warp", "exact") == "exact" else f" (--warp {c['warp']})"
        tags += _pose_tags(c) if c["mode"] == "selfsup" else ""
        tags += f" (seed {seed}: world and training)" if seed else ""
        label = f"{c['mode']} ResNet18{tags}"
        seed_of[(c["world"], label)] = seed
        for r in c["rows"]:
            rows.append({"world": c["world"], "model": label, "step": r["step"],
                         **{k: r[k] for k in METRICS}, "train_s": round(c["seconds"], 0)})
        for b, m in c["baselines"].items():  # each world seed renders another street: its own baselines
            name = b + (f" (world seed {seed})" if seed else "")
            seed_of[(c["world"], name)] = seed
            if not any(x["world"] == c["world"] and x["model"] == name for x in rows):
                rows.append({"world": c["world"], "model": name, "step": 0, **{k: m[k] for k in METRICS}, "train_s": 0})
    df = pd.DataFrame(rows).sort_values(["world", "model", "step"])
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"{a.record}.csv", df.to_csv(index=False))

    def colour(wname: str, model: str) -> str:
        """One colour per world seed (the old world in its own), so a curve and its baselines match."""
        return "C3" if wname == "old" else f"C{[0, 1, 2, 4, 5, 6][seed_of[(wname, model)] % 6]}"

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    steps = sorted(int(v) for v in df["step"].unique() if v)
    for ax, metric in zip(axes, ("abs_rel", "sq_rel")):
        for (wname, model), g in df.groupby(["world", "model"]):
            c = colour(wname, model)
            if model.split(" ")[0] in ("constant", "prior"):
                ax.axhline(g[metric].iloc[0], ls="--" if model.startswith("prior") else ":", lw=1, color=c,
                           label=f"{wname} world: {model}")
            else:
                style = {"selfsup": "o-", "supervised": "s--"}.get(model.split(" ")[0], "^-.")
                if "pose net at 1/" in model:  # the same world's colour: tell the pose forms apart by shape
                    style = "D-."
                ax.plot(g["step"], g[metric], style, color=c, label=f"{wname} world: {model}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(steps, [str(v) for v in steps])
        ax.minorticks_off()
        ax.set_xlabel("training steps (batch 4)")
        ax.set_ylabel(metric + " (test drives, lower is better)")
        ax.set_title(f"{metric}: dashed lines = per-pixel prior, dotted = constant depth", fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * ((len(labels) + 2) // 3), 1, 1))
    fig.savefig(RESULTS / f"{a.record}.png", dpi=110)
    c0 = curves[0] if curves else {}
    lines = ["# Learning curve: Monodepth2 ResNet18 from scratch, with baselines", "",
             "Command: `python experiments/depth_curve.py --world new|old --mode selfsup|supervised "
             "[--mixed-precision bf16] --milestones ...` then `python experiments/depth_curve.py --report"
             + ("" if a.record == "depth_curve" else f" --record {a.record}") + f" --work {' '.join(a.work)}`. "
             f"Date {datetime.date.today()}; code {code_commit()} (of the report; each curve ran with the code of its time).",
             f"Scale: {c0.get('drives')} drives x {c0.get('frames')} frames at {c0.get('size')}, batch {c0.get('batch')}, "
             f"lr {c0.get('lr')} (constant), {c0.get('train_samples')} training samples, {c0.get('test_frames')} test frames "
             f"(held-out drives). Machine: {c0.get('machine')}, shared with other jobs. "
             "Baselines look at no image: constant depth, and the per-pixel prior (mean training depth per pixel); "
             "both median-scaled per image like the models.", "",
             "| world | model | step | " + " | ".join(METRICS) + " | curve's training s (all milestones) |", "|---|---|---:|" + "---:|" * (len(METRICS) + 1)]
    for r in df.itertuples(index=False):
        lines.append(f"| {r.world} | {r.model} | {r.step or '–'} | " + " | ".join(f"{getattr(r, k):.3f}" for k in METRICS)
                     + f" | {int(r.train_s) or '–'} |")
    lines += ["", f"![learning curves]({a.record}.png)", ""] + ratio_lines(curves)
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=("new", "old"), default="new")
    ap.add_argument("--mode", choices=("selfsup", "supervised", "oracle-pose"), default="selfsup")
    ap.add_argument("--milestones", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", nargs="+", default=[str(Path.home() / "dn" / "curve")],
                    help="work folder (the curve runs in the first; --report reads them all)")
    ap.add_argument("--mixed-precision", choices=("off", "bf16"), default="off",
                    help="selfsup: train with DepthConfig.mixed_precision (bf16: bfloat16 autocast of the nets)")
    ap.add_argument("--warp", choices=("exact", "monodepth2"), default="exact",
                    help="selfsup: DepthConfig.warp (monodepth2: the half-pixel magnification of its code on PyTorch >= 1.3)")
    ap.add_argument("--pose-downsample", type=int, default=None,
                    help="the pose net sees the frames average-pooled by this factor (default: DepthConfig's; "
                         "1 is Monodepth2's full size)")
    ap.add_argument("--pose-per-pair", action="store_true",
                    help="one pose-net call per frame pair, as Monodepth2 (DepthConfig.pose_batch_pairs = False)")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--record", default="depth_curve",
                    help="--report writes experiments/results/RECORD.{md,csv,png} (default depth_curve)")
    a = ap.parse_args()
    if a.pose_downsample is None:
        from donna_nas.tasks.depth.run import DepthConfig

        a.pose_downsample = DepthConfig().pose_downsample
    report(a) if a.report else curve(a)


if __name__ == "__main__":
    sys.exit(main())
