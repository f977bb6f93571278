"""Does DONNA's accuracy predictor rank architectures? Distillation-finetune targets, a seed noise
floor, and four predictors side by side.

1. ``build-supernet`` on ``--space`` (default ``donna_depth_lite``) at the benchmark size with the
   shipped depth teacher (``--teacher``, default ``synth-resnet18-monodepth2``) on the standard
   embedded world (version 2, 6 drives x 60 frames, 64x192, seed 0); ``--archs`` training and
   ``--heldout`` held-out architectures, spread over MACs, each finetuned ``--ft-steps`` steps from
   its distilled blocks with ``--objective`` (``kd``: regress the teacher's four disparity scales);
   the target is Sq Rel on the val split against the velodyne ground truth.
2. The noise floor: the same architectures finetuned again with seed 1; Kendall tau between the
   two seeds' Sq Rel is the best any predictor can rank them.
3. Ridge on block NSRs (DONNA), one-hot ridge, gradient boosting on NSRs, and the unfitted DNA sum
   of NSRs: leave-one-out tau on the training architectures and tau on the held-out ones.

Resumes: finished BKD and finetune jobs are skipped. Writes
experiments/results/predictor_rank.{csv,md} (columns model,cv_tau,heldout_tau,n_train,n_heldout,seed_tau).

    OMP_NUM_THREADS=1 python experiments/predictor_rank.py --workers 2

``--eval-splits test``: each finetuned model is also scored on those splits of the world (the
test split: 116 frames of 2 unseen drives, against the val split's 24), and the noise floor and the
predictors are reported for those targets too (keys ``test/sq_rel``...). It asks how much of the
seed noise is the small evaluation set's; a study only, never a selection target (use its own
``--work`` and ``--record``):

    OMP_NUM_THREADS=1 python experiments/predictor_rank.py --archs 20 --heldout 10 --ft-steps 100 \
        --workers 2 --seed-archs all --eval-splits test --record predictor_rank_evalset

``--seed-study N`` (with ``--seed-archs all``): finetune every architecture with seeds 2 .. N-1 as
well (same run folder: records are keyed by architecture and seed), then for m = 1 .. N/2 compare
the mean target of seeds 0..m-1 with that of seeds m..2m-1: how the noise floor falls when each
target averages m seeds, and the predictors' held-out tau on the mean of all N seeds
(``experiments/results/RECORD_seeds.{md,csv}``):

    OMP_NUM_THREADS=1 python experiments/predictor_rank.py --archs 20 --heldout 10 --ft-steps 100 \
        --workers 2 --seed-archs all --eval-splits test --work ... --record predictor_rank_evalset --seed-study 4

``--zero-step``: also score every architecture's stitched network before any finetune step (in
its own shadow run) and report its Kendall tau with the finetuned targets: does the assembled
network already rank the architectures that the block-NSR predictors do not?

``--floor-steps N [N ...]``: after the run (resumed, so free when it is done), finetune the held-out
architectures again with seeds 0 and 1 for N steps each, from the same blocks, and report how the
noise floor (seed-to-seed tau, noise and signal standard deviations) changes with the finetune
budget (``experiments/results/RECORD_floor.{md,csv}``; the main record is left as it is):

    OMP_NUM_THREADS=1 python experiments/predictor_rank.py --archs 20 --heldout 10 --ft-steps 100 \
        --workers 2 --seed-archs all --floor-steps 300

``--floor-lr LR [LR ...]``: the same at the run's budget with other peak learning rates (a smaller
lr moves the assembled network less, so seeds differ less, but the target then says more about the
assembled start and less about the finetuned network; the table's ``loss last / first`` column
says how far each finetune moved). Both flags can be given together.
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
import time
from pathlib import Path

import numpy as np

from _provenance import cpu_model  # experiments/ is on sys.path when a script here runs
from _runs import shadow_run

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="donna_depth_lite")
    ap.add_argument("--teacher", default="synth-resnet18-monodepth2")
    ap.add_argument("--size", default="64x192")
    ap.add_argument("--bkd-steps", type=int, default=60)
    ap.add_argument("--archs", type=int, default=24)
    ap.add_argument("--heldout", type=int, default=12)
    ap.add_argument("--ft-steps", type=int, default=150)
    ap.add_argument("--ft-lr", type=float, default=1e-3)
    ap.add_argument("--objective", default="kd", choices=("kd", "selfsup", "kd+selfsup"))
    ap.add_argument("--ft-decoder", default="auto", choices=("auto", "stitched", "random"),
                    help="where each finetune's decoder starts (SupernetConfig.ft_decoder)")
    ap.add_argument("--record", default="predictor_rank", help="results name: experiments/results/RECORD.{csv,md}")
    ap.add_argument("--seed-archs", default="heldout", choices=("heldout", "all"),
                    help="which architectures the seed-1 noise-floor finetunes cover")
    ap.add_argument("--floor-steps", type=int, nargs="+", default=None,
                    help="noise floor of the held-out architectures at these finetune budgets (RECORD_floor.md)")
    ap.add_argument("--floor-lr", type=float, nargs="+", default=None,
                    help="noise floor of the held-out architectures at these finetune lrs (RECORD_floor.md)")
    ap.add_argument("--zero-step", action="store_true",
                    help="also score every architecture's assembled, stitched network before any finetune step, "
                         "and report how it ranks against the targets (a diagnostic of the features; module doc)")
    ap.add_argument("--eval-splits", nargs="+", default=[],
                    help="also score every finetuned model on these splits (a noise study; module doc)")
    ap.add_argument("--bn-recalibrate", type=int, default=0, metavar="FRAMES",
                    help="re-estimate batch-norm statistics on FRAMES cached training frames after each finetune, "
                         "and report the noise floor with and without (module doc)")
    ap.add_argument("--seed-study", type=int, default=0, metavar="N",
                    help="N seeds per architecture, averaged in groups (module doc; needs --seed-archs all)")
    ap.add_argument("--raw-join", action="store_true",
                    help="assemble each start point with the distilled blocks joined raw, without the bridges "
                         "(donna_nas.distill.assemble; the behaviour before them), in its own run folder RUN_raw")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--load", default="shared with other jobs", help="what else ran on the machine, for the header")
    ap.add_argument("--work", default=str(Path.home() / "dn" / "predictor_rank"))
    ap.add_argument("--world", default=str(Path.home() / "dn" / "teachers" / "world_v2_6x60_64x192_s0"))
    a = ap.parse_args()

    import pandas as pd

    from donna_nas.data.synth import synthesize
    from donna_nas.distill.pipeline import SupernetConfig, _run_jobs, build_supernet, sample_spread
    from donna_nas.distill.quality import nsr_lookup
    from donna_nas.predictor.finetune import FinetuneJob, run_finetune_job
    from donna_nas.predictor.fit import compare_models, kendall_tau
    from donna_nas.runtime.executor import LocalExecutor
    from donna_nas.runtime.io import write_text_atomic
    from donna_nas.space import load_space

    h, w = (int(v) for v in a.size.split("x"))
    data = synthesize(Path(a.world), drives=6, frames=60, size=(h, w), seed=0, progress=False, world_version=2)
    space = load_space(a.space)
    work = Path(a.work)
    # finetune records are keyed by architecture and seed, so another lr needs its own run folder
    run = work / (f"{a.space}_{a.objective}_{a.ft_steps}" + ("" if a.ft_lr == ap.get_default("ft_lr") else f"_lr{a.ft_lr:g}"))
    # with --eval-splits the build distils only, and the seed-0 finetunes below run here with the
    # extra splits (the build's own would lack them); with --raw-join they run in their own folder
    build_finetunes = not (a.eval_splits or a.bn_recalibrate or a.raw_join)
    cfg = SupernetConfig(teacher=a.teacher, data=str(data), task="depth", height=h, width=w, bkd_steps=a.bkd_steps,
                         bkd_batch=8, train_frames=208, val_frames=24, calib_frames=16,
                         predictor_archs=a.archs if build_finetunes else 0,
                         predictor_test=a.heldout if build_finetunes else 0, ft_steps=a.ft_steps, ft_batch=4, ft_lr=a.ft_lr,
                         distill_weight=0.0, ft_objective=a.objective, ft_decoder=a.ft_decoder, arch_pool=2000, seed=0)
    ex = LocalExecutor(a.workers)
    t0 = time.time()
    res = build_supernet(space, run, cfg, executor=ex, resume=(run / "config.yaml").is_file(), progress=False)
    build_s = time.time() - t0

    if a.raw_join:  # the same blocks, its own finetune records (they are keyed by architecture and seed)
        run = shadow_run(run, f"{run.name}_raw")
    # the same architectures and split as the build (sample_spread is seeded), finetuned with seed 1
    archs = sample_spread(space, a.archs + a.heldout, cfg.arch_pool, cfg.seed)
    test_idx = set(np.linspace(1, len(archs) - 2, a.heldout).round().astype(int))
    split = np.array(["test" if i in test_idx else "train" for i in range(len(archs))])
    # seed 0 is the build's own finetune (resumed, so free); seed 1 covers --seed-archs
    seed1 = [i for i in range(len(archs)) if a.seed_archs == "all" or split[i] == "test"]
    from donna_nas.distill.pipeline import resolve_ft_decoder

    decoder = resolve_ft_decoder(cfg, json.loads((run / "teacher.json").read_text()))
    job = lambda x, s: FinetuneJob(str(run), x.encode(), "depth", str(data), a.ft_steps, 4, a.ft_lr, h, w, 0.0, s,  # noqa: E731
                                   1, 0, a.objective, decoder, tuple(a.eval_splits), a.bn_recalibrate,
                                   bridge=not a.raw_join)
    from donna_nas.tasks.depth.predictor import export_val_gt

    for sp in ["val", *a.eval_splits]:  # once here, not in every parallel job
        export_val_gt(run, str(data), sp)
    t0 = time.time()
    recs = {0: _run_jobs(ex, run_finetune_job, [job(x, 0) for x in archs], run, "finetune seed 0", progress=False),
            1: _run_jobs(ex, run_finetune_job, [job(archs[i], 1) for i in seed1], run, "finetune seed 1", progress=False)}
    seed_s = time.time() - t0
    # a resumed run redoes nothing: report the wall time of the invocations that did the work

    tpath = run / "rank_timings.json"
    prev = json.loads(tpath.read_text()) if tpath.is_file() else {}
    build_s, seed_s = build_s + prev.get("build_s", 0.0), seed_s + prev.get("seed_s", 0.0)
    write_text_atomic(tpath, json.dumps({"build_s": build_s, "seed_s": seed_s}))
    test = split == "test"
    if a.floor_steps or a.floor_lr:
        return floor_study(a, ex, run, archs, test, recs, job, decoder)
    lookup = nsr_lookup(res.quality, space)
    if a.seed_study:
        return seed_study(a, ex, run, archs, split, recs, job, space, lookup)
    tr, te = [archs[i] for i in np.where(split == "train")[0]], [archs[i] for i in np.where(split == "test")[0]]
    rows, floor = [], {}
    metrics = ["sq_rel", "abs_rel"] + [f"{sp}/{m}" for sp in a.eval_splits for m in ("sq_rel", "abs_rel")]
    metrics += [f"bn_running/{m}" for m in ("sq_rel", "abs_rel")] if a.bn_recalibrate else []
    for metric in metrics:
        y = {0: np.array([r["metrics"][metric] for r in recs[0]])}
        y1 = np.full(len(archs), np.nan)
        y1[seed1] = [r["metrics"][metric] for r in recs[1]]
        seed_tau_heldout = kendall_tau(y[0][test], y1[test])
        seed_tau_all = kendall_tau(y[0], y1) if a.seed_archs == "all" else float("nan")
        # the noise floor: tau between seeds, and the median seed-to-seed change in metric units
        floor[metric] = (seed_tau_heldout, seed_tau_all, float(np.nanmedian(np.abs(y[0] - y1))),
                         float(y[0].min()), float(y[0].max()))
        y[1] = np.where(np.isnan(y1), y[0], y1)  # for the mean-of-seeds target: held-out (or all) averaged
        both = "mean of seeds 0 and 1" + (" (held-out)" if a.seed_archs == "heldout" else "")
        for target, ys in (("seed 0", y[0]), (both, (y[0] + y[1]) / 2)):
            ev, _ = compare_models(tr, ys[split == "train"], te, ys[split == "test"], space, lookup)
            for r in ev:
                rows.append({"model": r["model"], "metric": metric, "target": target, "cv_tau": r["cv_tau"],
                             "heldout_tau": r["test_tau"], "n_train": len(tr), "n_heldout": len(te),
                             "seed_tau": seed_tau_heldout, "seed_tau_all": seed_tau_all,
                             "seed_median_abs_diff": floor[metric][2]})
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    cols = ["model", "cv_tau", "heldout_tau", "n_train", "n_heldout", "seed_tau", "metric", "target", "seed_tau_all", "seed_median_abs_diff"]
    df[cols].to_csv(RESULTS / f"{a.record}.csv", index=False, float_format="%.4f")
    lf = [r["metrics"].get("loss_first", float("nan")) for r in recs[0]]
    ll = [r["metrics"].get("loss_last", float("nan")) for r in recs[0]]
    lines = ["# Predictor ranking with distillation-finetune targets", "",
             provenance(a), "",
             f"Scale: space `{space.name}` ({space.size():.3g} architectures) at {h}x{w}; teacher `{a.teacher}`; world "
             f"version 2, 6 drives x 60 frames, seed 0; BKD {a.bkd_steps} steps per block supernet; "
             f"{len(tr)} training + {len(te)} held-out architectures (spread over MACs), each finetuned {a.ft_steps} "
             f"steps (batch 4, lr {a.ft_lr:g} decaying to 0 along a cosine, objective `{a.objective}`, decoder `{decoder}`) from its distilled blocks; target Sq Rel on the "
             "val split (velodyne ground truth).",
             f"Finetune objective, mean over architectures: {np.nanmean(lf):.4f} at the start, {np.nanmean(ll):.4f} at the end. "
             f"Spread over the architectures (seed 0): Sq Rel {floor['sq_rel'][3]:.3f} .. {floor['sq_rel'][4]:.3f}, "
             f"abs_rel {floor['abs_rel'][3]:.4f} .. {floor['abs_rel'][4]:.4f}.",
             f"Wall time, summed over the invocations: build-supernet {build_s:.0f} s, seed-1 finetunes {seed_s:.0f} s.", "",
             "**Noise floor** (Kendall tau between the seed-0 and seed-1 finetunes of the same architectures; "
             "no predictor can rank them better than the targets rank themselves):", "",
             *[f"- {m}: tau {f[0]:.3f} on the held-out architectures"
               + (f", {f[1]:.3f} on all {len(archs)}" if a.seed_archs == "all" else
                  f" (seed 1 run on the {len(seed1)} held-out architectures only)")
               + f"; median seed-to-seed change {f[2]:.4f}, the smallest predicted difference that means anything."
               for m, f in floor.items()], "",
             "| predictor | metric | target | LOO tau (train) | tau held-out | target tau ≥ 0.8 |",
             "|---|---|---|---:|---:|---|"]
    for r in df.itertuples(index=False):
        lines.append(f"| {r.model} | {r.metric} | {r.target} | {r.cv_tau:.3f} | {r.heldout_tau:.3f} | "
                     f"{'met' if r.heldout_tau >= 0.8 else '**missed**'} |")
    sq0 = (df.target == "seed 0") & (df.metric == "sq_rel")
    ridge = df[(df.model == "ridge_nsr") & sq0].iloc[0]
    dna = df[df.model.str.startswith("sum_nsr") & sq0].iloc[0]
    lines += ["", f"Fitted ridge on NSR vs the unfitted DNA sum (held-out tau, seed-0 Sq Rel targets): {ridge.heldout_tau:.3f} vs "
              f"{dna.heldout_tau:.3f}: {'ridge better' if ridge.heldout_tau > dna.heldout_tau else '**ridge not better**'}.", ""]
    lines += eval_split_lines(a, data, recs, seed1, len(archs))
    lines += bn_lines(a, recs, seed1)
    zero = zero_step_scores(ex, run, archs, job) if a.zero_step else {}
    if a.zero_step:
        lines += zero_step_lines(a, zero, archs, split, recs, seed1)
    save_archs(a, space, lookup, archs, split, recs, seed1, zero)
    write_text_atomic(RESULTS / f"{a.record}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def eval_split_lines(a, data: Path, recs: dict, seed1: list, n_archs: int) -> list[str]:
    """With --eval-splits: the noise floor of the same finetuned models scored on each evaluation
    set, side by side, and how the sets rank the architectures against each other (seed 0)."""
    if not a.eval_splits:
        return []
    from donna_nas.predictor.fit import kendall_tau

    def frames(split: str) -> int:
        return sum(1 for ln in (data / "splits" / f"{split}_files.txt").read_text().splitlines() if ln.strip())

    out = ["## The evaluation set's share of the noise", "",
           "The same finetuned models (seed 0 and seed 1 of every architecture in the seed-1 set), scored on "
           "each split. A study of the noise only: the test split is never a selection target.", "",
           "| scored on | frames | metric | seed-to-seed tau | median change | noise sd | signal sd | noise / signal |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for split in ["val"] + list(a.eval_splits):
        for m in ("sq_rel", "abs_rel"):
            key = m if split == "val" else f"{split}/{m}"
            out.append(f"| {split} | {frames(split)} | {m} | {noise_cells(noise_floor(*seed_pair(recs, seed1, key)))} |")
    out.append("")
    for split in a.eval_splits:
        v = np.array([r["metrics"]["sq_rel"] for r in recs[0]])
        t = np.array([r["metrics"][f"{split}/sq_rel"] for r in recs[0]])
        out.append(f"Kendall tau between the val and {split} Sq Rel of the same {n_archs} seed-0 models: "
                   f"{kendall_tau(v, t):.3f}.")
    return out + [""]


def zero_step_lines(a, z: dict[str, np.ndarray], archs: list, split: np.ndarray, recs: dict, seed1: list) -> list[str]:
    """With --zero-step: Kendall tau between each architecture's network as assembled (distilled
    blocks, stitched decoder, no finetune step; deterministic) and its finetuned target, for the
    start points joined with bridges and joined raw side by side (``assemble``). It asks whether
    the assembled network already carries the ranking the NSR predictors miss, and how far the
    bridges bring the start point towards the teacher."""
    from donna_nas.predictor.fit import kendall_tau

    key = own_stats_key(a, "sq_rel")
    y0 = np.array([r["metrics"][key] for r in recs[0]])
    y1 = np.full(len(archs), np.nan)
    y1[seed1] = [r["metrics"][key] for r in recs[1]]
    both = ~np.isnan(y1)
    mean = (y0 + np.where(both, y1, y0)) / 2
    joined = "raw (no bridges)" if a.raw_join else "with bridges"
    out = ["## The assembled network before finetuning, against the targets", "",
           f"Sq Rel of each architecture's stitched network with no finetune step, its blocks joined with the bridges "
           f"(`donna_nas.distill.assemble`) and joined raw, against the finetuned targets (start points joined {joined}; "
           f"Sq Rel {y0.min():.3f} .. {y0.max():.3f}), with Kendall tau (Sq Rel, the finetune's own batch-norm "
           "statistics). A predictor on block NSRs that ranked as well as this would need no finetunes; this one needs "
           "an evaluation per architecture, so it is a diagnostic, not a search objective.", "",
           "| start point | architectures | Sq Rel median | Sq Rel range | tau with the seed-0 target | "
           "tau with the seed-0 / seed-1 mean | tau of seed 0 with seed 1 |",
           "|---|---|---:|---|---:|---:|---:|"]
    for join, zs in z.items():
        for label, sel in ((f"all {len(archs)}", np.ones(len(archs), bool)), ("held-out", split == "test")):
            s1 = sel & both
            out.append(f"| {join} | {label} | {np.median(zs[sel]):.2f} | {zs[sel].min():.2f} .. {zs[sel].max():.2f} | "
                       f"{kendall_tau(zs[sel], y0[sel]):.3f} | {kendall_tau(zs[s1], mean[s1]):.3f} | "
                       f"{kendall_tau(y0[s1], y1[s1]):.3f} |")
    return out + [""]


def zero_step_scores(ex, run: Path, archs: list, job) -> dict[str, np.ndarray]:
    """Sq Rel of every architecture's stitched start point, no finetune step, joined with bridges
    and raw (each in its own shadow run of the build: ``{build}_floor0`` and ``{build}_floor0_raw``)."""
    from donna_nas.distill.pipeline import _run_jobs
    from donna_nas.predictor.finetune import run_finetune_job

    build = run.with_name(run.name.removesuffix("_raw"))
    out = {}
    for join, bridge, suffix in (("with bridges", True, ""), ("raw", False, "_raw")):
        shadow = shadow_run(build, f"{build.name}_floor0{suffix}")
        recs = _run_jobs(ex, run_finetune_job, [dataclasses.replace(job(x, 0), steps=0, run_dir=str(shadow), bridge=bridge)
                                                for x in archs], shadow, f"zero-step scores ({join})", progress=False)
        out[join] = np.array([r["metrics"]["sq_rel"] for r in recs])
    return out


def save_archs(a, space, lookup: dict, archs: list, split: np.ndarray, recs: dict, seed1: list,
               zero: dict[str, np.ndarray]) -> None:
    """``RECORD_archs.csv``: one row per architecture (its string, train or held-out, MACs, params,
    the NSR of each of its blocks, the seed-0 and seed-1 targets, the zero-step scores), so other
    predictors can be fitted to these targets without rerunning a finetune."""
    from donna_nas.predictor.features import feature_names, nsr_features

    nsr = nsr_features(archs, lookup, space)
    rows = []
    for i, x in enumerate(archs):
        row = {"arch": x.encode(), "split": "heldout" if split[i] == "test" else "train",
               "macs": int(space.macs(x)), "params": int(space.params(x)),
               **{n: float(v) for n, v in zip(feature_names(space), nsr[i])}}
        for m in ("sq_rel", "abs_rel"):
            row[f"{m}_seed0"] = recs[0][i]["metrics"][m]
            row[f"{m}_seed1"] = recs[1][seed1.index(i)]["metrics"][m] if i in seed1 else float("nan")
        for join, zs in zero.items():
            row["zero_step_sq_rel_" + ("bridged" if join == "with bridges" else "raw")] = float(zs[i])
        rows.append(row)
    save_rows(rows, f"{a.record}_archs.csv")


def summed_wall(path: Path, seconds: float) -> float:
    """``seconds`` plus what earlier invocations recorded in ``path``, recorded again: a resumed
    study redoes nothing, so its report keeps the wall time of the invocations that did the work."""
    from donna_nas.runtime.io import write_text_atomic

    total = seconds + (json.loads(path.read_text()).get("wall_s", 0.0) if path.is_file() else 0.0)
    write_text_atomic(path, json.dumps({"wall_s": total}))
    return total


def seed_pair(recs: dict, seed1: list, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``key`` of the seed-0 and seed-1 finetunes of the architectures in the seed-1 set."""
    return (np.array([recs[0][i]["metrics"][key] for i in seed1]),
            np.array([r["metrics"][key] for r in recs[1]]))


def own_stats_key(a, metric: str) -> str:
    """The record key of ``metric`` scored with the finetune's own batch-norm statistics (with
    --bn-recalibrate the plain key holds the re-estimated score)."""
    return f"bn_running/{metric}" if a.bn_recalibrate else metric


def bn_lines(a, recs: dict, seed1: list) -> list[str]:
    """With --bn-recalibrate: the noise floor of the same finetuned models scored with their own
    running batch-norm statistics and with statistics re-estimated on cached training frames."""
    if not a.bn_recalibrate:
        return []
    out = ["## Batch-norm statistics: the finetune's own against re-estimated", "",
           f"The same finetuned models (seeds 0 and 1 of every architecture in the seed-1 set), scored on the val split "
           f"twice: with the running statistics the finetune ended with (an EMA over its last colour-jittered batches), "
           f"and after re-estimating them on {a.bn_recalibrate} cached, un-augmented training frames.", "",
           "| batch-norm statistics | metric | seed-to-seed tau | median change | noise sd | signal sd | noise / signal |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for label, prefix in (("finetune's running EMA", "bn_running/"), (f"re-estimated ({a.bn_recalibrate} frames)", "")):
        for m in ("sq_rel", "abs_rel"):
            out.append(f"| {label} | {m} | {noise_cells(noise_floor(*seed_pair(recs, seed1, prefix + m)))} |")
    return out + [""]


def provenance(a) -> str:
    """The results' command, date and machine line (with what else ran there, ``--load``)."""
    cmd = "python experiments/predictor_rank.py " + shlex.join(sys.argv[1:])
    return (f"Command: `OMP_NUM_THREADS=1 {cmd}`. Date {datetime.date.today()}. Machine: {cpu_model()} "
            f"({platform.machine()}), {os.cpu_count()} cores, 1 torch thread per job, {a.workers} jobs at a time ({a.load}).")


def noise_cells(f: dict) -> str:
    """One ``noise_floor`` result as table cells: tau, median change, noise sd, signal sd, noise / signal."""
    ratio = f["noise_sd"] / f["signal_sd"] if f["signal_sd"] > 0 else float("inf")
    return (f"{f['seed_tau']:.3f} | {f['median_abs_change']:.4f} | {f['noise_sd']:.4f} | {f['signal_sd']:.4f} | "
            f"{ratio:.2f}")


def save_rows(rows: list[dict], name: str) -> None:
    """``experiments/results/NAME`` from a list of row dicts (4 decimals)."""
    import pandas as pd

    RESULTS.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(RESULTS / name, index=False, float_format="%.4f")


def noise_floor(y0: np.ndarray, y1: np.ndarray) -> dict:
    """Seed-to-seed agreement of one target over the same architectures: Kendall tau, the median
    change, the per-run noise sd (sd of the difference / sqrt 2) and what is left of the spread
    over architectures once that noise is taken out (the signal a predictor can rank)."""
    from donna_nas.predictor.fit import kendall_tau

    noise = float(np.std(y0 - y1, ddof=1) / np.sqrt(2))
    total = float(np.var(np.concatenate([y0, y1]), ddof=1))
    return {"seed_tau": kendall_tau(y0, y1), "median_abs_change": float(np.median(np.abs(y0 - y1))),
            "noise_sd": noise, "signal_sd": float(np.sqrt(max(total - noise**2, 0.0))),
            "min": float(min(y0.min(), y1.min())), "max": float(max(y0.max(), y1.max()))}


def seed_study(a, ex, run: Path, archs: list, split: np.ndarray, recs: dict, job, space, lookup) -> None:
    """How the noise floor falls when each target is the mean of m seeds (module doc)."""

    from donna_nas.distill.pipeline import _run_jobs
    from donna_nas.predictor.finetune import run_finetune_job
    from donna_nas.predictor.fit import compare_models
    from donna_nas.runtime.io import write_text_atomic

    n = a.seed_study
    if a.seed_archs != "all" or n < 2 or n % 2:
        sys.exit("error: --seed-study N needs --seed-archs all and an even N >= 2")
    t0 = time.time()
    for s in range(2, n):
        recs[s] = _run_jobs(ex, run_finetune_job, [job(x, s) for x in archs], run, f"finetune seed {s}", progress=False)
    wall = summed_wall(run / "seed_study_timings.json", time.time() - t0)
    metrics = ["sq_rel"] + [f"{sp}/sq_rel" for sp in a.eval_splits] + (["bn_running/sq_rel"] if a.bn_recalibrate else [])
    rows, pred_rows = [], []
    tr, te = split == "train", split == "test"
    for metric in metrics:
        y = np.array([[r["metrics"][metric] for r in recs[s]] for s in range(n)])  # (seeds, archs)
        for m in range(1, n // 2 + 1):
            rows.append({"metric": metric, "seeds_averaged": m, "n_archs": len(archs),
                         **noise_floor(y[:m].mean(0), y[m:2 * m].mean(0))})
        ev, _ = compare_models([archs[i] for i in np.where(tr)[0]], y.mean(0)[tr], [archs[i] for i in np.where(te)[0]],
                               y.mean(0)[te], space, lookup)
        pred_rows += [{"metric": metric, "target": f"mean of {n} seeds", "model": r["model"], "cv_tau": r["cv_tau"],
                       "heldout_tau": r["test_tau"]} for r in ev]
    save_rows(rows, f"{a.record}_seeds.csv")
    lines = ["# Predictor targets: the noise floor against the seeds averaged per target", "",
             provenance(a), "",
             f"Scale: the {len(archs)} architectures of `{a.record}.md`'s run, each finetuned {a.ft_steps} steps from its "
             f"distilled blocks with seeds 0 .. {n - 1} (seeds 2 .. {n - 1}: {wall:.0f} s wall). Row m compares the mean "
             f"target of seeds 0..m-1 with that of seeds m..2m-1 over all {len(archs)} architectures. Noise sd: one "
             "m-seed mean's (sd of the difference / sqrt 2); signal sd: the spread over architectures with that noise "
             "taken out. Kendall tau >= 0.8 between two noisy targets needs noise / signal of about 0.25 or less.", "",
             "| target | seeds averaged | seed-group tau | median change | noise sd | signal sd | noise / signal |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['metric']} | {r['seeds_averaged']} | {noise_cells(r)} |" for r in rows]
    lines += ["", f"Predictors fitted on the mean of all {n} seeds ({int(tr.sum())} training, {int(te.sum())} held-out "
              "architectures):", "", "| target | predictor | LOO tau (train) | tau held-out | target tau ≥ 0.8 |",
              "|---|---|---:|---:|---|"]
    for r in pred_rows:
        lines.append(f"| {r['metric']} ({r['target']}) | {r['model']} | {r['cv_tau']:.3f} | {r['heldout_tau']:.3f} | "
                     f"{'met' if r['heldout_tau'] >= 0.8 else '**missed**'} |")
    write_text_atomic(RESULTS / f"{a.record}_seeds.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def floor_study(a, ex, run: Path, archs: list, test: np.ndarray, recs: dict, job, decoder: str) -> None:
    """The held-out architectures' noise floor at the run's finetune budget and lr, at each
    --floor-steps budget (the run's lr) and at each --floor-lr (the run's budget)."""

    from donna_nas.distill.pipeline import _run_jobs
    from donna_nas.predictor.finetune import run_finetune_job
    from donna_nas.runtime.io import write_text_atomic

    held = [archs[i] for i in np.where(test)[0]]
    # seed 1 ran on the held-out architectures only, or on all of them (--seed-archs)
    held1 = recs[1] if a.seed_archs == "heldout" else [r for r, t in zip(recs[1], test) if t]
    held0 = [r for r, t in zip(recs[0], test) if t]
    # the target as scored with the finetune's own batch-norm statistics, and (with --bn-recalibrate)
    # re-estimated ones: the records carry both
    keys = {"finetune's": own_stats_key(a, "sq_rel"), **({"re-estimated": "sq_rel"} if a.bn_recalibrate else {})}
    base = (a.ft_steps, a.ft_lr)
    got = {base: (held0, held1)}
    variants = [(st, a.ft_lr) for st in a.floor_steps or []] + [(a.ft_steps, lr) for lr in a.floor_lr or []]
    times = {}
    for steps, lr in variants:
        # a finetune record is keyed by architecture and seed within a run (one run, one budget), so
        # another budget or lr gets its own run folder that shares everything of this run but its records
        name = f"{run.name}_floor{steps}" + ("" if lr == a.ft_lr else f"_lr{lr:g}")
        shadow = shadow_run(run, name)

        def at(x, s, steps=steps, lr=lr, shadow=shadow):
            return dataclasses.replace(job(x, s), steps=steps, lr=lr, run_dir=str(shadow))
        t0 = time.time()
        got[(steps, lr)] = tuple(_run_jobs(ex, run_finetune_job, [at(x, s) for x in held], shadow,
                                           f"finetune {steps} steps lr {lr:g} seed {s}", progress=False) for s in (0, 1))
        times[(steps, lr)] = summed_wall(shadow / "floor_timings.json", time.time() - t0)
    rows = []
    for (steps, lr), (r0, r1) in sorted(got.items()):
        moved = float(np.mean([r["metrics"]["loss_last"] / r["metrics"]["loss_first"]
                               if r["metrics"]["loss_first"] else np.nan for r in r0]))
        for label, key in keys.items():
            ys = [np.array([r["metrics"][key] for r in rs]) for rs in (r0, r1)]
            rows.append({"steps": steps, "lr": lr, "bn_statistics": label, "n_archs": len(held),
                         "loss_last_over_first": moved, **noise_floor(*ys)})
    save_rows(rows, f"{a.record}_floor.csv")
    lines = ["# Predictor targets: noise floor against the finetune budget and learning rate", "",
             provenance(a), "",
             f"Scale: the {len(held)} held-out architectures of `{a.record}.md`'s run (space `{a.space}`, 64x192, "
             f"teacher `{a.teacher}`), each finetuned from its distilled blocks with seeds 0 and 1 (objective "
             f"`{a.objective}`, decoder `{decoder}`, batch 4, the lr decaying to 0 along a cosine over the budget); "
             "target Sq Rel on the val split. Noise sd: the sd of the seed-to-seed difference / sqrt 2 (one run's "
             "noise). Signal sd: the spread over architectures with that noise taken out. Kendall tau >= 0.8 between "
             "two noisy targets needs a noise sd of about a quarter of the signal sd or less. Loss last / first: the "
             "finetune objective's mean over its last steps over that over its first (how far the finetune moved the "
             "assembled network; 0 steps: none).", "",
             "| finetune steps | lr | batch-norm statistics | seed-to-seed tau | median change | noise sd | signal sd | "
             "noise / signal | Sq Rel range | loss last / first | wall s |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {r['steps']} | {r['lr']:g} | {r['bn_statistics']} | {noise_cells(r)} | {r['min']:.3f} .. {r['max']:.3f} | "
              f"{r['loss_last_over_first']:.3f} | {times.get((r['steps'], r['lr']), float('nan')):.0f} |" for r in rows]
    lines.append("")
    write_text_atomic(RESULTS / f"{a.record}_floor.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
