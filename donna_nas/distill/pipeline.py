"""``build_supernet``: teacher cut → feature cache → BKD jobs → block-quality table → predictor.

Run directory (``RUN/``)::

    config.yaml  space.yaml  teacher.json        what was asked, the space, the teacher and its cut
    cache/                                       frames + teacher taps (float16), σ² per channel
    jobs/<job-id>.json                           one record per finished job (resume skips these)
    blocks/<block>-<op>-<act>.safetensors        distilled block supernets (+ BKD adapters)
    tables/block_quality.csv                     held-out NSR of every (block, choice)
    tables/rank_check.csv                        shared-weight vs trained-alone NSR (optional)
    tables/predictor_train.csv                   finetuned architectures: features, metrics, size
    tables/predictor_eval.csv                    Kendall τ of each predictor model
    predictor.json                               ridge-on-NSR as a ``LinearBlockPredictor``
    report.md  plots/*.png  timings.json

Every phase is a set of independent jobs run through an ``Executor``; a job whose record exists is
skipped, so a killed build continues where it stopped and produces the same tables.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch
import yaml

from donna_nas.distill.bkd import BKDJob, run_bkd_job, supernet_name
from donna_nas.distill.cache import build_cache
from donna_nas.distill.quality import nsr_lookup, plot_heatmaps, write_quality_table
from donna_nas.distill.teacher import TeacherCut, load_teacher
from donna_nas.errors import UserError
from donna_nas.predictor.finetune import FinetuneJob, run_finetune_job
from donna_nas.runtime.executor import Executor, LocalExecutor
from donna_nas.runtime.io import atomic_path, write_json_atomic, write_text_atomic
from donna_nas.space.space import Architecture, SearchSpace

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.tasks.base import Task

__all__ = ["SupernetConfig", "RunResult", "build_supernet", "sample_spread"]


@dataclass
class SupernetConfig:
    """Every setting of a build (defaults: a small CPU-sized build)."""

    teacher: str = "resnet18"
    teacher_weights: str | None = None
    data: str | None = None
    task: str = "depth"
    height: int = 0  # BKD resolution; 0 = half the space's input size
    width: int = 0
    train_frames: int = 256
    val_frames: int = 64
    bkd_steps: int = 300
    bkd_batch: int = 8
    bkd_lr: float = 2e-3
    calib_frames: int = 16
    seed: int = 0
    job_threads: int = 1
    rank_check: int = 0  # choices of one block also trained alone, to check shared-weight ranking
    rank_check_block: str | None = None
    rank_check_steps: int = 0  # 0 = bkd_steps
    predictor_archs: int = 24
    predictor_test: int = 8  # extra architectures held out from fitting (ranking check)
    arch_pool: int = 2000
    ft_steps: int = 50
    ft_batch: int = 0  # 0 = the task's default (depth 4, classify 32)
    ft_lr: float = 0.0  # 0 = the task's default (depth 2e-4, classify 2e-3)
    ft_height: int = 0  # 0 = BKD resolution
    ft_width: int = 0
    ft_val_frames: int = 0
    distill_weight: float = 0.1
    # predictor-finetune objective: "kd" (match the teacher depth model's four disparity scales,
    # DONNA's distillation finetune), "selfsup" (the task's own loss), "kd+selfsup", or "auto":
    # kd when the teacher is a trained depth model (a depth run or a shipped model), else selfsup
    ft_objective: str = "auto"
    # where the predictor finetune's decoder starts: "stitched" (the teacher depth model's decoder
    # with each block's BKD out-adapter folded in, donna_nas.tasks.depth.stitch), "random", or
    # "auto": stitched when the task is depth and the teacher is a trained depth model, else random
    ft_decoder: str = "auto"
    folds: int = 0  # 0 = leave-one-out

    def resolved_size(self, space: SearchSpace) -> tuple[int, int]:
        h = self.height or max(32, space.input_size[0] // 2 // 32 * 32)
        w = self.width or max(32, space.input_size[1] // 2 // 32 * 32)
        return h, w

    def validate(self) -> None:
        from donna_nas.tasks.base import get_task

        get_task(self.task)  # unknown task: a UserError naming the available ones
        for name in ("train_frames", "val_frames", "bkd_steps", "bkd_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"config field {name!r} must be at least 1")
        if self.predictor_archs and self.predictor_archs < 3:
            raise UserError("--predictor-archs must be 0 (no predictor) or at least 3")
        if self.ft_objective not in FT_OBJECTIVES:
            raise UserError(f"--ft-objective {self.ft_objective}: use one of {', '.join(FT_OBJECTIVES)}")
        if self.ft_objective in ("kd", "kd+selfsup") and self.task != "depth":
            raise UserError(f"--ft-objective {self.ft_objective}: output distillation is for --task depth; "
                            f"use auto or selfsup with --task {self.task}")
        if self.ft_decoder not in FT_DECODERS:
            raise UserError(f"--ft-decoder {self.ft_decoder}: use one of {', '.join(FT_DECODERS)}")
        if self.ft_decoder == "stitched" and self.task != "depth":
            raise UserError(f"--ft-decoder stitched: a stitched decoder is for --task depth; "
                            f"use auto or random with --task {self.task}")


FT_OBJECTIVES = ("auto", "selfsup", "kd", "kd+selfsup")
FT_DECODERS = ("auto", "stitched", "random")


def _teacher_has_outputs(teacher_info: dict[str, Any]) -> bool:
    """A trained depth model (a depth run or a shipped model), not a bare encoder."""
    return teacher_info.get("kind") in ("depth_run", "shipped") or bool(teacher_info.get("shipped"))


def resolve_ft_objective(config: SupernetConfig, teacher_info: dict[str, Any]) -> str:
    """``auto`` → ``kd`` for a depth task whose teacher is a trained depth model (it has outputs
    to distil from), else ``selfsup``; an explicit kd with a bare-encoder teacher is refused."""
    has_outputs = _teacher_has_outputs(teacher_info)
    if config.ft_objective == "auto":
        return "kd" if config.task == "depth" and has_outputs else "selfsup"
    if config.ft_objective != "selfsup" and not has_outputs:
        raise UserError(f"--ft-objective {config.ft_objective}: teacher {teacher_info.get('name') or teacher_info.get('spec')} "
                        "has no depth decoder to distil from; give --teacher a depth run or a shipped model")
    return config.ft_objective


def resolve_ft_decoder(config: SupernetConfig, teacher_info: dict[str, Any]) -> str:
    """``auto`` → ``stitched`` for a depth task whose teacher has a decoder, else ``random``; an
    explicit ``stitched`` with a bare-encoder teacher is refused."""
    has_decoder = config.task == "depth" and _teacher_has_outputs(teacher_info)
    if config.ft_decoder == "auto":
        return "stitched" if has_decoder else "random"
    if config.ft_decoder == "stitched" and not has_decoder:
        raise UserError(f"--ft-decoder stitched: teacher {teacher_info.get('name') or teacher_info.get('spec')} "
                        "has no depth decoder to stitch; give --teacher a depth run or a shipped model")
    return config.ft_decoder


@dataclass
class RunResult:
    run_dir: Path
    quality: pd.DataFrame
    predictor: dict[str, Any] | None
    evaluation: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- helpers
def _load_config(path: Path) -> SupernetConfig:
    from donna_nas.runtime.config_file import read_config_mapping

    return SupernetConfig(**read_config_mapping(path, SupernetConfig))


def _done(run: Path, job_id: str, weights: Path | None = None) -> dict | None:
    """The finished record of a job, or None (missing, corrupt, or its weights are gone)."""
    p = run / "jobs" / f"{job_id}.json"
    try:
        rec = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if weights is not None and not _readable_safetensors(weights):
        return None  # weights lost or corrupt: the job reruns and rewrites them
    return rec


def _readable_safetensors(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
        return True
    except Exception:  # missing, truncated or not a safetensors file
        return False


def _run_jobs(executor: Executor, fn: Callable, jobs: list, run: Path, label: str,
              weights: Callable[[Any], Path | None] = lambda j: None, progress: bool = True) -> list[dict]:
    """Run the jobs whose records are missing; return every job's record in job order."""
    records: list[dict | None] = [_done(run, j.job_id, weights(j)) for j in jobs]
    todo = [i for i, r in enumerate(records) if r is None]
    if todo:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as bar:
            task = bar.add_task(label, total=len(jobs), completed=len(jobs) - len(todo))
            executor.map(fn, [jobs[i] for i in todo], on_done=lambda _i, _r: bar.advance(task))
        records = [_done(run, j.job_id) for j in jobs]
    missing = [j.job_id for j, r in zip(jobs, records) if r is None]
    if missing:
        raise UserError(f"{run}: job(s) {missing[:3]} produced no record; rerun with --resume")
    return records  # type: ignore[return-value]


def sample_spread(space: SearchSpace, n: int, pool: int, seed: int) -> list[Architecture]:
    """``n`` distinct architectures evenly spread over the MACs range of ``pool`` random samples."""
    rng = random.Random(seed)
    seen: dict[str, Architecture] = {}
    for _ in range(pool * 3):
        a = space.sample(rng)
        seen.setdefault(a.encode(), a)
        if len(seen) >= pool:
            break
    archs = sorted(seen.values(), key=lambda a: (space.macs(a), a.encode()))
    if len(archs) < n:
        raise UserError(f"space {space.name!r} yielded only {len(archs)} distinct architectures; "
                        f"ask for fewer than {n}")
    idx = np.linspace(0, len(archs) - 1, n).round().astype(int)
    out, used = [], set()
    for i in idx:  # nudge duplicates (tiny pools) to the next free position
        while i in used:
            i = (i + 1) % len(archs)
        used.add(i)
        out.append(archs[i])
    return out


# ----------------------------------------------------------------------------------- pipeline
def build_supernet(space: SearchSpace, out: str | Path, config: SupernetConfig | None = None,
                   teacher: TeacherCut | None = None, frames: dict[str, torch.Tensor] | None = None,
                   executor: Executor | None = None, resume: bool = False,
                   progress: bool = True) -> RunResult:
    """Distil every block of ``space`` from the teacher and fit the accuracy predictor.

    ``teacher``: a ``TeacherCut`` (any module + cut points) instead of ``config.teacher``.
    ``frames``: {"train": (N,3,H,W), "val": (M,3,H,W)} in [0, 1] instead of ``config.data``.
    """
    run = Path(out)
    cfg_path = run / "config.yaml"
    if cfg_path.is_file():
        if not resume:
            raise UserError(f"{run}: already holds a build (config.yaml); pass --resume to continue it "
                            "or choose another --out")
        config = _load_config(cfg_path)
        old = SearchSpace.from_yaml(run / "space.yaml")
        if old.fingerprint() != space.fingerprint():
            raise UserError(f"{run}: was built for space {old.name!r} ({old.fingerprint()}), not "
                            f"{space.name!r} ({space.fingerprint()}); use another --out")
    config = config or SupernetConfig()
    config.validate()
    executor = executor or LocalExecutor(1)
    timings: dict[str, float] = {}
    size = config.resolved_size(space)

    # ---- teacher and its cut (checked before anything is written)
    t0 = time.time()
    if teacher is None:
        torch.manual_seed(config.seed)  # a random-init teacher is the same for the same --seed
        teacher, tinfo = load_teacher(config.teacher, config.teacher_weights)
        tinfo = dict(tinfo, spec=config.teacher, weights=config.teacher_weights)
    else:
        tinfo = {"kind": "module", "name": teacher.name, "cut_points": teacher.cut_points,
                 "spec": None, "weights": None}
    channels = teacher.check_space(space, size)
    _, strides = teacher.probe(size)
    tinfo.update(channels=channels, strides=strides)
    if frames is None:
        if not config.data:
            raise UserError("--data is required (a KITTI-layout folder with splits/; for --task "
                            "classify a folder with train/ and val/ in ImageFolder layout)")
        read = _task(config).bkd_frames
        frames = {"train": read(config.data, "train", size, config.train_frames),
                  "val": read(config.data, "val", size, config.val_frames)}
    for split in ("train", "val"):
        if split not in frames or frames[split].shape[0] == 0:
            raise UserError(f"the {split} split is empty; BKD needs training and held-out frames")
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / "space.yaml", space.to_yaml())
    write_text_atomic(cfg_path, yaml.safe_dump(asdict(config), sort_keys=False))
    write_json_atomic(run / "teacher.json", tinfo)
    build_cache(run / "cache", teacher, {k: frames[k] for k in ("train", "val")},
                {k: tinfo.get(k) for k in ("kind", "name", "spec", "weights")})
    timings["teacher_cache_s"] = time.time() - t0

    # ---- blockwise distillation: one job per (block, op, act)
    t0 = time.time()
    jobs = []
    for i, b in enumerate(space.blocks):
        for op in b.choices.op:
            for act in b.choices.act:
                jobs.append(BKDJob(str(run), i, b.name, op, act, steps=config.bkd_steps,
                                   batch=config.bkd_batch, lr=config.bkd_lr,
                                   seed=config.seed * 1000 + len(jobs), calib_frames=config.calib_frames,
                                   threads=config.job_threads))
    recs = _run_jobs(executor, run_bkd_job, jobs, run, "bkd",
                     lambda j: run / "blocks" / f"{supernet_name(j.block_name, j.op, j.act)}.safetensors",
                     progress)
    timings["bkd_s"] = time.time() - t0
    rows = [r for rec in recs for r in rec["rows"]]
    quality = write_quality_table(rows, run / "tables" / "block_quality.csv")
    plot_heatmaps(quality, run / "plots" / "block_quality.png")
    lookup = nsr_lookup(quality, space)
    job_seconds = {"bkd_train_s": sum(r["train_s"] for r in recs),
                   "bkd_score_s": sum(r["score_s"] for r in recs)}

    # ---- optional: shared weights vs choices trained alone
    rank = None
    if config.rank_check:
        t0 = time.time()
        rank = _rank_check(space, run, config, executor, quality, progress)
        timings["rank_check_s"] = time.time() - t0

    # ---- accuracy predictor
    predictor, evaluation = None, []
    if config.predictor_archs:
        t0 = time.time()
        archs = sample_spread(space, config.predictor_archs + config.predictor_test,
                              config.arch_pool, config.seed)
        test_idx = set(np.linspace(1, len(archs) - 2, config.predictor_test).round().astype(int)) \
            if config.predictor_test else set()
        split = ["test" if i in test_idx else "train" for i in range(len(archs))]
        h = config.ft_height or size[0]
        w = config.ft_width or size[1]
        task = _task(config)
        task.prepare_predictor(run, config)
        ft_lr = config.ft_lr or task.ft_lr
        ft_batch = config.ft_batch or task.ft_batch
        teacher_info = json.loads((run / "teacher.json").read_text())
        objective = resolve_ft_objective(config, teacher_info)
        decoder = resolve_ft_decoder(config, teacher_info)
        ft_jobs = [FinetuneJob(str(run), a.encode(), config.task, config.data, config.ft_steps,
                               ft_batch, ft_lr, h, w, config.distill_weight,
                               config.seed, config.job_threads, config.ft_val_frames, objective, decoder)
                   for a in archs]
        ft = _run_jobs(executor, run_finetune_job, ft_jobs, run, "finetune", progress=progress)
        timings["finetune_s"] = time.time() - t0
        job_seconds["finetune_s"] = sum(r["seconds"] for r in ft)
        t0 = time.time()
        predictor, evaluation = _fit_predictor(space, run, config, archs, split, ft, lookup)
        timings["predictor_fit_s"] = time.time() - t0

    prev = {}
    tp = run / "timings.json"
    if tp.is_file():
        try:
            prev = json.loads(tp.read_text()).get("invocations", [])
        except json.JSONDecodeError:
            prev = []
    all_t = {"invocations": (prev if isinstance(prev, list) else []) + [timings],
             "job_seconds": job_seconds}
    write_json_atomic(tp, all_t)
    from donna_nas.distill.report import write_report

    write_report(run, space, config, quality, rank, evaluation, all_t)
    return RunResult(run, quality, predictor, evaluation, timings)


def _task(config: SupernetConfig) -> Task:
    """The task object of ``config.task`` (``donna_nas.tasks``)."""
    from donna_nas.tasks.base import get_task

    return get_task(config.task)


def _rank_check(space, run, config, executor, quality, progress) -> pd.DataFrame:
    """Train ``rank_check`` choices of one block alone; Kendall τ of their NSRs vs shared ones."""
    from donna_nas.predictor.fit import kendall_tau

    name = config.rank_check_block or space.blocks[len(space.blocks) // 2].name
    if name not in space.block_names:
        raise UserError(f"--rank-check-block {name!r} is not a block of {space.name!r}")
    i = space.block_names.index(name)
    q = quality[quality["block"] == name].sort_values("nsr").reset_index(drop=True)
    k = min(config.rank_check, len(q))
    picks = q.iloc[np.linspace(0, len(q) - 1, k).round().astype(int)]
    jobs = [BKDJob(str(run), i, name, r.op, r.act, steps=config.rank_check_steps or config.bkd_steps,
                   batch=config.bkd_batch, lr=config.bkd_lr, seed=config.seed * 1000 + 777 + n,
                   calib_frames=config.calib_frames, threads=config.job_threads, fixed=r.choice,
                   tag="alone") for n, r in enumerate(picks.itertuples())]
    recs = _run_jobs(executor, run_bkd_job, jobs, run, "rank-check", progress=progress)
    df = pd.DataFrame({"block": name, "choice": picks["choice"].values,
                       "nsr_shared": picks["nsr"].values,
                       "nsr_alone": [r["rows"][0]["nsr"] for r in recs]})
    df.attrs["kendall_tau"] = kendall_tau(df["nsr_shared"], df["nsr_alone"])
    with atomic_path(run / "tables" / "rank_check.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    return df


def _fit_predictor(space, run, config, archs, split, ft, lookup):
    from donna_nas.predictor.features import feature_names, nsr_features
    from donna_nas.predictor.fit import compare_models, predicts_constant, to_linear_block_json
    from donna_nas.predictor.models import Ridge

    task = _task(config)
    metric, kept, direction = task.metric, task.table_metrics, task.direction
    X = nsr_features(archs, lookup, space)
    rows = []
    for a, s, rec, x in zip(archs, split, ft, X):
        m = rec["metrics"]
        row = {"arch": a.encode(), "split": s}
        row.update({n: v for n, v in zip(feature_names(space), x)})
        row.update({k: m.get(k) for k in kept})
        row.update(params=space.params(a), macs=space.macs(a))
        rows.append(row)
    df = pd.DataFrame(rows)
    with atomic_path(run / "tables" / "predictor_train.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    tr = [i for i, s in enumerate(split) if s == "train"]
    te = [i for i, s in enumerate(split) if s == "test"]
    y = df[metric].to_numpy(float)
    if not np.all(np.isfinite(y)):
        raise UserError(f"{run}/tables/predictor_train.csv: non-finite {metric} values; check the finetunes")
    evaluation, preds = compare_models([archs[i] for i in tr], y[tr], [archs[i] for i in te], y[te],
                                       space, lookup, config.folds, config.seed)
    if direction == "maximize":  # the unfitted baselines rank accuracy in reverse (low NSR, high top-1)
        for r in evaluation:
            if "unfitted" in r["model"]:
                r["cv_tau"], r["test_tau"] = -r["cv_tau"], -r["test_tau"]
    ev = pd.DataFrame(evaluation)
    with atomic_path(run / "tables" / "predictor_eval.csv") as tmp:
        ev.to_csv(tmp, index=False, float_format="%.4f")
    ridge = Ridge(feature_names=feature_names(space)).fit(X[tr], y[tr])
    best = {r["model"]: r for r in evaluation}["ridge_nsr"]
    obj = to_linear_block_json(ridge, space, lookup, metric,
                               {"direction": direction,
                                "cv_kendall_tau": best["cv_tau"], "test_kendall_tau": best["test_tau"],
                                "n_train": len(tr), "n_test": len(te),
                                "constant": predicts_constant(ridge.predict(X[tr]), y[tr])})
    write_json_atomic(run / "predictor.json", obj)
    _scatter(run, y, ridge.predict(X), split, metric, best)
    return obj, evaluation


def _scatter(run, y, pred, split, metric, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for s, mk in (("train", "o"), ("test", "^")):
        idx = [i for i, v in enumerate(split) if v == s]
        ax.scatter(np.asarray(pred)[idx], np.asarray(y)[idx], marker=mk, label=s, alpha=0.8)
    lo, hi = float(min(np.min(y), np.min(pred))), float(max(np.max(y), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"predicted {metric} (ridge on block NSRs)")
    ax.set_ylabel(f"measured {metric}")
    ax.set_title(f"Kendall τ: CV {best['cv_tau']:.2f}, held-out {best['test_tau']:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    (run / "plots").mkdir(exist_ok=True)
    with atomic_path(run / "plots" / "predictor.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
