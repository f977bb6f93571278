"""`donna-nas quickstart`: the whole system, end to end, on the embedded synthetic world.

Default stages (the shipped teacher, ``donna-nas models list``):

data (the world the shipped teacher was trained on, read from its model card) → the shipped depth
teacher (``synth-resnet18-xdistill``: no teacher training; ``OUT/teacher`` holds it as a depth run
directory, evaluated on this world's test split) → build-supernet (blockwise distillation of that
teacher + accuracy predictor from distillation finetunes) → latency of this CPU (ONNX Runtime INT8,
a measured sample of ops + the op latency model) → exact Pareto search, selecting the best
predicted architecture whose latency on that source is ≤ the teacher's / 1.5 (``speedup``; the
teacher's encoder timed the same way, ``donna_nas.latency.teacher``) → finetune the selected
encoder from its distilled blocks with output distillation from the teacher (``distill_from``) +
self-supervision + X-Distill (the shipped segmentation teacher ``synth-segnet``) → export fp32 +
INT8 → ``OUT/quickstart_table.csv`` and ``OUT/report.md``.

``train_teacher`` (``--train-teacher``) is the path without shipped models: it trains the
segmentation teacher and a ResNet depth teacher (X-Distill) first, on its own world (96x320 by
default), and finetunes the searched encoder with X-Distill alone (a teacher trained for a few
epochs is no model to distil from).

Every stage writes into ``OUT/`` and is skipped when its output is already there, so a killed
quickstart resumes where it stopped: a depth stage continues from its last checkpoint, or starts
over (same seed, same result) when it was killed before writing one. ``--tiny`` runs the same stages at toy scale (CI).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from donna_nas.errors import UserError
from donna_nas.runtime.io import write_json_atomic, write_text_atomic
from donna_nas.runtime.threads import cores_busy_elsewhere, threads_if_free, torch_threads
from donna_nas.search.run import DEPLOYED_CONFIRM, DEPLOYED_GUARD

METRICS = ("abs_rel", "sq_rel", "rmse", "a1")
TRAINABLE_TEACHERS = ("resnet18", "resnet50")
# OUT/quickstart_table.csv: these columns, one row per model in ROWS order
TABLE_COLUMNS = ("model", "params", "fps_fp32", "fps_int8", "sq_rel_fp32", "sq_rel_int8", "abs_rel_fp32", "a1")
ROWS = ("teacher", "searched", "constant", "prior")
# how a run is executed, not what it computes (final_threads: up to float rounding): free to change
# on resume
RUN_ONLY_FIELDS = ("workers", "final_threads")


@dataclass
class QuickstartConfig:
    """Scale of each stage. ``small()`` is the README's default, ``tiny()`` the CI smoke run.

    World fields left ``None`` (size, drives, frames, world_seed, world_version) come from the
    shipped teacher's model card (``resolved()``): the quickstart renders the world it was
    trained on. With ``train_teacher`` they default to the 96x320, 3 drives × 50 frames world."""

    teacher: str = "synth-resnet18-xdistill"  # shipped depth model; with train_teacher: resnet18|resnet50
    seg_teacher: str = "synth-segnet"  # shipped segmentation teacher (X-Distill), unless train_teacher
    train_teacher: bool = False  # train the segmentation and depth teachers here instead
    size: tuple[int, int] | None = None
    drives: int | None = None
    frames: int | None = None
    world_seed: int | None = None
    world_version: int | None = None
    seed: int = 0  # training seeds
    space: str = "donna_depth_lite"
    seg_epochs: int = 4  # train_teacher only
    teacher_epochs: int = 6  # train_teacher only
    batch: int = 4
    xdistill_weight: float = 0.01  # 0.1 let the cross-entropy swamp the photometric loss at CPU scale (docs/depth.md)
    # the default's stage sizes fit 15 min on a loaded 2-core CPU (one thread): per-step times
    # measured there, see small()
    bkd_steps: int = 120  # 40 left the first block above NSR 1 (median 1.10); 120: 0.57 (docs/supernet.md)
    bkd_size: tuple[int, int] = (64, 192)
    predictor_archs: int = 6
    predictor_test: int = 2
    ft_steps: int = 15
    ft_lr: float = 1e-3  # predictor finetunes' lr (0: the task's default); distillation converges at 1e-3
    bkd_val_frames: int = 32  # frames the block NSRs are scored on
    latency_archs: int = 12
    precision: str = "int8"
    # selection for the device (donna_nas.search.select): the best predicted architecture whose
    # latency on the search's source (ORT INT8 on this CPU, or --latency-table) is at most the
    # teacher's / speedup (the teacher's encoder measured on the same source), or at most
    # max_latency_ms, or 1000 / target_fps ms; set one of the three (the others None)
    speedup: float | None = 1.5
    max_latency_ms: float | None = None
    target_fps: float | None = None
    teacher_latency_ms: float | None = None  # the teacher's latency, instead of measuring it
    # with ONNX Runtime latency (no latency table): the bound also applies to the deployed model,
    # the whole depth network timed end to end (the teacher's too), for at most this many front
    # candidates found by bisection (donna_nas.search.select.check_deployed); 0 = off
    deployed_checks: int = 16
    # the deployed latency must beat the bound by this fraction (the selection sits at the bound,
    # and a re-measurement differs by a few percent)
    deployed_guard: float = DEPLOYED_GUARD
    # under --speedup, each candidate is paired with the teacher this many times and the median
    # decides (one pairing near the bound passes or fails by its timing noise)
    deployed_confirm: int = DEPLOYED_CONFIRM
    # an extra params constraint, off by default (params are reported, they do not select): the
    # selected model's params, decoder included, stay under this share of the teacher's (the
    # paper: 3.7M / 32M = 0.12 of ResNet50); the search bounds encoder params by it minus the
    # decoder of the space's widest encoder
    max_params_ratio: float | None = None
    final_epochs: int = 10  # a bound only: final_steps ends the finetune first (52 steps per epoch on 6x60)
    final_steps: int | None = 350  # cap on the final finetune's optimizer steps (None: final_epochs)
    final_lr: float = 5e-4  # the final finetune's lr (teachers trained with train_teacher use 1e-4)
    # final finetune: L1-of-log-disparity distillation of the teacher's four scales (weight; 0 = off)
    distill_weight: float = 1.0
    # the final finetune's X-Distill reads the full-resolution depth map only: reading all four
    # scales runs the transfer net four times at 64x192, and 350 steps would not fit 15 min
    # (``DepthConfig.xdistill_scales``; None: every scale, as the shipped teachers were trained)
    final_xdistill_scales: tuple[int, ...] | None = (0,)
    calib: int = 16
    fps_repeats: int = 20
    # processes for build-supernet's independent jobs (blockwise distillation, block scoring,
    # predictor finetunes), one torch thread each: 2 uses both cores of a 2-core machine; the
    # result does not depend on it (each job carries its own seed)
    workers: int = 2
    # torch threads of the final finetune, the one long stage that runs alone (None: ``workers``,
    # the cores the quickstart already claims for build-supernet, when that many are free of
    # other processes as it starts: ``final_finetune_threads``). Two threads finish it 1.3x
    # sooner on an idle 2-core AMD EPYC and 1.9x later beside a busy core
    # (``experiments/results/bench_final_threads.md``). Float sums then run in another order,
    # so the model matches a one-thread run to rounding only.
    final_threads: int | None = None
    lr_step: int = 6  # epochs before the final finetune's lr drops 10x: step 312 of 350 on 6x60

    @classmethod
    def small(cls, train_teacher: bool = False) -> "QuickstartConfig":
        """The default, sized for 15 min on an otherwise idle 2-core CPU: build-supernet's jobs in
        two one-thread processes, every other stage in one thread (measured stage times:
        ``experiments/results/quickstart.md``). The final finetune's 350 steps at lr 5e-4, x0.1
        after epoch 6 (step 312), X-Distill on the full-resolution map only, come from
        ``experiments/final_finetune_curve.py`` on two seeds: the searched model's Sq Rel is 1.03x
        and 1.02x the teacher's there (1.01x and 1.03x after 400 steps), against 1.08x and 1.14x
        after 350 steps at a constant lr with X-Distill on every scale
        (``final_finetune_curve{,_step,_xd0}.md``). 400 steps do not fit 15 min."""
        if train_teacher:  # the path before shipped teachers: its own world, teachers trained here
            return cls(teacher="resnet18", seg_teacher="", train_teacher=True, size=(96, 320), drives=3,
                       frames=50, world_seed=0, world_version=2, bkd_steps=60, predictor_archs=8,
                       predictor_test=3, ft_steps=30, final_epochs=6, final_steps=None, distill_weight=0.0,
                       final_lr=1e-4, lr_step=4, ft_lr=0.0, bkd_val_frames=64, final_xdistill_scales=None)
        return cls()

    @classmethod
    def tiny(cls, train_teacher: bool = False) -> "QuickstartConfig":
        scale = dict(drives=3, frames=9, space="tiny", seg_epochs=1, teacher_epochs=1, batch=2, bkd_steps=3,
                     bkd_size=(64, 192), predictor_archs=3, predictor_test=0, ft_steps=2, latency_archs=2,
                     final_epochs=1, final_steps=None, calib=2, fps_repeats=3, workers=1)
        if train_teacher:
            return cls(teacher="resnet18", seg_teacher="", train_teacher=True, size=(64, 192), world_seed=0,
                       world_version=2, distill_weight=0.0, **scale)
        return cls(**scale)  # the shipped teacher's size (64x192), seed and world version

    def latency_target(self):
        """The ``LatencyTarget`` of ``speedup`` / ``max_latency_ms`` / ``target_fps``."""
        from donna_nas.search.select import LatencyTarget

        return LatencyTarget(self.max_latency_ms, self.target_fps, self.speedup, self.teacher_latency_ms)

    def shipped_teacher(self):
        """The shipped depth teacher (``ShippedModel``, weights verified); None with train_teacher.
        An unknown name is one line listing the shipped depth models."""
        if self.train_teacher:
            return None
        from donna_nas.tasks.depth.zoo import resolve_model

        return resolve_model(self.teacher, kind="depth")

    def teacher_backbone(self) -> str:
        """The teacher's encoder (``resnet18``/``resnet50``): the trained one, or the shipped model's."""
        m = self.shipped_teacher()
        if m is None:
            return self.teacher
        return str(json.loads((m.folder / "model.json").read_text())["backbone"])

    def resolved(self) -> "QuickstartConfig":
        """A copy with every world field set (from the shipped teacher's card where ``None``);
        one-line ``UserError`` for an unknown model, a teacher to train that is no ResNet, or a
        size other than the shipped teacher's, or fewer than one worker."""
        if self.workers < 1:
            raise UserError(f"--workers {self.workers}: must be at least 1 (1 runs every job in this process)")
        if self.final_threads is not None and self.final_threads < 1:
            raise UserError(f"--final-threads {self.final_threads}: must be at least 1 (default: --workers)")
        if self.train_teacher:
            if self.teacher not in TRAINABLE_TEACHERS:
                raise UserError(f"--train-teacher trains {' or '.join(TRAINABLE_TEACHERS)}, not {self.teacher!r}; "
                                f"drop --train-teacher to use the shipped model {self.teacher}")
            fill = dict(size=(96, 320), drives=3, frames=50, world_seed=self.seed, world_version=2)
            return dataclasses.replace(self, **{k: v for k, v in fill.items() if getattr(self, k) is None})
        from donna_nas.tasks.depth.zoo import is_model_name, list_models, resolve_model

        if self.teacher in TRAINABLE_TEACHERS and not is_model_name(self.teacher):
            known = ", ".join(x.name for x in list_models() if x.kind == "depth") or "none"
            raise UserError(f"teacher {self.teacher}: a backbone to train, not a shipped model; pass "
                            f"--train-teacher (QuickstartConfig.small(train_teacher=True)) or a shipped "
                            f"model ({known})")
        m = self.shipped_teacher()
        resolve_model(self.seg_teacher, kind="segmentation")  # unknown: one line listing the shipped ones
        info = json.loads((m.folder / "model.json").read_text())
        world = m.card.get("world") or {}
        trained = (int(info["height"]), int(info["width"]))
        card = {"size": tuple(world.get("size") or trained), "drives": world.get("drives"),
                "frames": world.get("frames"), "world_seed": world.get("seed"),
                "world_version": world.get("version")}
        fill = {}
        for k, v in card.items():
            if getattr(self, k) is None:
                if v is None:
                    raise UserError(f"{m.folder / 'card.json'}: the card of {m.name} names no world "
                                    f"{k.replace('world_', '')}; set QuickstartConfig.{k}")
                fill[k] = v
        cfg = dataclasses.replace(self, **fill)
        cfg.size = (int(cfg.size[0]), int(cfg.size[1]))
        if cfg.size != trained:
            raise UserError(f"size {cfg.size[0]}x{cfg.size[1]}: the shipped teacher {m.name} was trained at "
                            f"{trained[0]}x{trained[1]}; leave the size unset (its own) or use --train-teacher")
        return cfg


@dataclass
class Stage:
    name: str
    done: Callable[[], bool]
    run: Callable[[], Any]
    seconds: float = 0.0
    skipped: bool = False


_CONSOLE = None


def _log(msg: str) -> None:
    """Stage messages; library code keeps its own console (it never imports the CLI)."""
    global _CONSOLE
    if _CONSOLE is None:
        import sys

        from rich.console import Console

        _CONSOLE = Console(width=None if sys.stdout.isatty() else 160)
    _CONSOLE.print(f"[bold cyan]quickstart[/] {msg}", highlight=False)


def _space(cfg: QuickstartConfig):
    from donna_nas.space import load_space

    return dataclasses.replace(load_space(cfg.space), input_size=tuple(cfg.size))


def stage_names(cfg: QuickstartConfig) -> list[str]:
    """The stages ``run_quickstart`` runs for ``cfg``, in order."""
    teacher = (["segmentation teacher", f"{cfg.teacher} depth teacher (X-Distill)"] if cfg.train_teacher
               else [f"shipped teacher {cfg.teacher}"])
    how = "distillation + X-Distill" if cfg.distill_weight else "X-Distill"
    return ["synthetic world", *teacher, "build-supernet", "latency + search",
            f"finetune searched encoder ({how})", "export teacher", "export searched",
            "teacher and searched timed side by side"]


def run_quickstart(out: str | Path = "runs/quickstart", cfg: QuickstartConfig | None = None,
                   latency_table: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage; returns the table rows (``ROWS``) and the stage timings."""
    from donna_nas.runtime.io import remove_stale_temp

    cfg = (cfg or QuickstartConfig.small()).resolved()  # unknown models / bad sizes: one line, before any work
    out = Path(out).absolute()  # stage configs store absolute paths: resumable from any directory
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)  # temporary files of writes a kill interrupted
    check_latency_target(cfg, latency_table, out)  # before any training: a target that cannot resolve
    saved = out / "quickstart.json"
    settings = dataclasses.asdict(cfg) | {"latency_table": latency_table}
    if saved.is_file():
        def result_settings(d: dict) -> dict:  # a resume may change how the run executes
            return {k: v for k, v in d.items() if k not in RUN_ONLY_FIELDS}

        old = result_settings(json.loads(saved.read_text()))
        now = result_settings(json.loads(json.dumps(settings)))
        if old != now:
            def shown(d: dict, k: str) -> str:
                return repr(d[k]) if k in d else "absent"

            diff = [f"{k}: {shown(old, k)} there, {shown(now, k)} here" for k in sorted(set(old) | set(now))
                    if (k in old) != (k in now) or old.get(k) != now.get(k)]
            listed = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
            raise UserError(f"{saved}: this folder holds a quickstart with other settings ({listed}); "
                            f"use another --out or delete {out}")
    else:
        write_json_atomic(saved, settings)
    space = _space(cfg)
    data, teacher = out / "data", out / "teacher"
    seg = str(out / "seg_teacher.safetensors") if cfg.train_teacher else cfg.seg_teacher
    supernet, searched = out / "supernet", out / "searched"

    def synth():
        from donna_nas.data.synth import synthesize

        synthesize(data, cfg.drives, cfg.frames, cfg.size, cfg.world_seed, progress=progress,
                   world_version=cfg.world_version)

    def seg_teacher():
        from donna_nas.tasks.depth.seg_teacher import train_seg_teacher

        train_seg_teacher(data, seg, size=cfg.size, epochs=cfg.seg_epochs, batch=cfg.batch,
                          seed=cfg.seed, progress=progress)

    def depth_run(run: Path, backbone: str, epochs: int, distill_from: str | None = None,
                  max_steps: int | None = None, lr: float = 1e-4,
                  xdistill_scales: tuple[int, ...] | None = None) -> None:
        from donna_nas.tasks.depth.evaluate import evaluate_run
        from donna_nas.tasks.depth.run import DepthConfig, has_checkpoint
        from donna_nas.tasks.depth.train import train_depth

        dcfg = DepthConfig(data=str(data), backbone=backbone, height=cfg.size[0], width=cfg.size[1],
                           epochs=epochs, batch=cfg.batch, lr=lr, act="relu", xdistill=True,
                           seg_teacher=seg,
                           xdistill_weight=cfg.xdistill_weight, seed=cfg.seed, lr_step=cfg.lr_step,
                           checkpoint_every=50, distill_from=distill_from, max_steps=max_steps,
                           xdistill_scales=None if xdistill_scales is None else list(xdistill_scales),
                           distill_weight=cfg.distill_weight if distill_from else 1.0)
        # a run killed before its first checkpoint starts over (same seed, same result)
        train_depth(dcfg, run, resume=has_checkpoint(run), progress=progress, log=_log)
        evaluate_run(run)

    def shipped():
        materialise_shipped_teacher(cfg.teacher, teacher, data, seg_teacher=cfg.seg_teacher)

    # the teacher as the later stages name it: the shipped model by name, or the run trained here
    teacher_spec = str(teacher) if cfg.train_teacher else cfg.teacher

    def build():
        from donna_nas.distill.pipeline import SupernetConfig, build_supernet
        from donna_nas.runtime.executor import LocalExecutor

        scfg = SupernetConfig(teacher=teacher_spec, data=str(data), height=cfg.bkd_size[0],
                              width=cfg.bkd_size[1], bkd_steps=cfg.bkd_steps, bkd_batch=8,
                              predictor_archs=cfg.predictor_archs,
                              predictor_test=cfg.predictor_test, ft_steps=cfg.ft_steps,
                              ft_batch=cfg.batch, ft_lr=cfg.ft_lr, val_frames=cfg.bkd_val_frames,
                              seed=cfg.seed)
        build_supernet(space, supernet, scfg, executor=LocalExecutor(cfg.workers),
                       resume=(supernet / "config.yaml").is_file(), progress=progress)

    def do_search():
        run_search(space, supernet, cfg, latency_table, teacher, progress)

    def finetune():
        threads, why = final_finetune_threads(cfg)
        _log(f"final finetune on {threads} torch thread(s): {why}")
        write_json_atomic(out / "final_threads.json", {"threads": threads, "why": why})
        with torch_threads(threads):
            depth_run(searched, str(supernet), cfg.final_epochs,
                      distill_from=teacher_spec if cfg.distill_weight else None, max_steps=cfg.final_steps,
                      lr=cfg.final_lr, xdistill_scales=cfg.final_xdistill_scales)

    def export(run: Path) -> Callable[[], Any]:
        def go():
            from donna_nas.export.pipeline import export_run

            export_run(run, int8=True, calib=cfg.calib, fps_repeats=cfg.fps_repeats)
        return go

    names = iter(stage_names(cfg))
    stages = [Stage(next(names), lambda: (data / "synth.json").is_file() and (data / "splits").is_dir(), synth)]
    if cfg.train_teacher:
        stages += [Stage(next(names), Path(seg).is_file, seg_teacher),
                   Stage(next(names), lambda: (teacher / "metrics.json").is_file(),
                         lambda: depth_run(teacher, cfg.teacher, cfg.teacher_epochs))]
    else:
        stages.append(Stage(next(names), lambda: (teacher / "metrics.json").is_file(), shipped))
    stages += [
        Stage(next(names), lambda: (supernet / "predictor.json").is_file(), build),
        Stage(next(names), lambda: (supernet / "selected.json").is_file(), do_search),
        Stage(next(names), lambda: (searched / "metrics.json").is_file(), finetune),
        Stage(next(names), lambda: (teacher / "export" / "export.json").is_file(), export(teacher)),
        Stage(next(names), lambda: (searched / "export" / "export.json").is_file(), export(searched)),
        Stage(next(names), lambda: (out / "fps_side_by_side.json").is_file(),
              lambda: time_side_by_side(out, cfg.size, cfg.fps_repeats)),
    ]
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    for i, st in enumerate(stages, 1):
        if st.done():
            _log(f"[{i}/{len(stages)}] {st.name}: done already")
            continue
        _log(f"[{i}/{len(stages)}] {st.name} …")
        t0 = time.time()
        st.run()
        timings[st.name] = round(time.time() - t0, 1)
        write_json_atomic(timings_path, timings)
    rows = table_rows(out)
    write_report(out, rows, timings, cfg)
    return {"rows": rows, "timings": timings}


def final_finetune_threads(cfg: QuickstartConfig) -> tuple[int, str]:
    """Torch threads for the final finetune, and why: ``--final-threads`` as given; by default
    as many as ``--workers`` when that many cores are free of other processes as it starts (one
    second's sample), else fewer, since more threads than free cores run slower than one."""
    if cfg.final_threads is not None:
        return cfg.final_threads, "--final-threads"
    busy = cores_busy_elsewhere(1.0)
    n = threads_if_free(cfg.workers, busy)
    if n == cfg.workers:
        return n, "as many as --workers" + ("" if busy is None else f" (other processes: {busy:.1f} cores busy)")
    return n, f"{cfg.workers} wanted (--workers), but other processes kept {busy:.1f} cores busy as it started"


def materialise_shipped_teacher(name: str, run: Path, data: Path, seg_teacher: str | None = None) -> Path:
    """Write the shipped depth model ``name`` as the depth run directory ``run`` (config.yaml,
    model.json, fp32 model.safetensors, card.json) on ``data``, and evaluate it there (metrics.json,
    report.md, plots/), so every stage that takes a depth run (evaluate, export, a teacher's
    latency) takes it. No training: ``config.yaml`` records the model's own recipe with 0 steps."""
    from safetensors.torch import save_file

    from donna_nas.runtime.io import atomic_path
    from donna_nas.tasks.depth.evaluate import evaluate_run
    from donna_nas.tasks.depth.run import DepthConfig, load_model_weights, save_config
    from donna_nas.tasks.depth.zoo import SHIPPED_TEACHER_POSE, resolve_model

    m = resolve_model(name, kind="depth")
    info = json.loads((m.folder / "model.json").read_text())
    run.mkdir(parents=True, exist_ok=True)
    xdistill = "xdistill" in str(m.card.get("method", name))
    dcfg = DepthConfig(data=str(data), backbone=info["backbone"], space=info.get("space"),
                       height=int(info["height"]), width=int(info["width"]), act=info["act"],
                       min_depth=info["min_depth"], max_depth=info["max_depth"], batch=4, epochs=1,
                       max_steps=0, init_from=m.name, xdistill=xdistill,
                       seg_teacher=seg_teacher if xdistill else None, **SHIPPED_TEACHER_POSE)
    save_config(run, dcfg)
    tensors, _ = load_model_weights(m.name)  # fp32, from the verified fp16 file
    with atomic_path(run / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json_atomic(run / "card.json", m.card)
    write_json_atomic(run / "model.json", {**info, "init_from": m.name, "shipped": m.name,
                                           "sha256": m.card.get("sha256")})
    evaluate_run(run)
    return run


def run_search(space, supernet: Path, cfg: QuickstartConfig, latency_table: str | None,
               teacher: Path, progress: bool) -> None:
    """Latency source (a table, filled in by the op latency model where it lacks ops, or this
    CPU measured + modelled) → exact/NSGA-II search, through the library's search run."""
    from donna_nas.search.objectives import Constraints
    from donna_nas.search.run import run_search as search_run

    cap = encoder_params_cap(space, teacher, cfg.max_params_ratio) if cfg.max_params_ratio else None
    measure = None if latency_table else {"fp32": "ort", "int8": "ort-int8"}[cfg.precision]
    deployed = None
    if measure and cfg.deployed_checks:
        from donna_nas.tasks.depth.task import TASK

        # the searched encoder is finetuned with a ReLU decoder (depth_run's act)
        deployed = TASK.deployed_latency(supernet, space, tuple(cfg.size), cfg.precision, act="relu")
    out = search_run(supernet, latency_table=latency_table, measure=measure, space=space,
                     constraints=Constraints(max_params=cap), method="auto", seed=cfg.seed,
                     measure_archs=cfg.latency_archs, fill_missing=True,
                     measure_progress=progress, log=_log, target=cfg.latency_target(),
                     teacher=str(teacher), deployed=deployed, deployed_checks=cfg.deployed_checks,
                     deployed_guard=cfg.deployed_guard, deployed_confirm=cfg.deployed_confirm)
    if out.quality is not None and out.quality.warning():
        _log(f"[bold red]{out.quality.warning()}[/]")
    out.require_selection()
    s = out.selected
    _log(f"selected {s.arch}: predicted {out.result.metric_name} {s.metric:.4f}, {s.latency_ms:.3g} ms "
         f"({out.selected_latency}), {s.params / 1e6:.2f}M encoder params; {out.bound.describe()}")


def check_latency_target(cfg: QuickstartConfig, latency_table: str | None, out: Path) -> None:
    """Fail in one line before the training stages when the latency target cannot be resolved:
    ``speedup`` with a latency table that cannot price the teacher (and no teacher_latency_ms)."""
    target = cfg.latency_target()
    if latency_table and target.needs_teacher:
        from donna_nas.latency import LookupTable
        from donna_nas.search.run import resolve_table, teacher_latency

        cfg = cfg.resolved()
        path = resolve_table(latency_table)
        teacher_latency("table", LookupTable.from_csv(path), cfg.teacher_backbone(), cfg.size, out, path.name)


def encoder_params_cap(space, teacher_run: Path, ratio: float) -> int | None:
    """Encoder-params bound so that encoder + decoder ≤ ``ratio`` × the teacher's depth network."""
    if not ratio:
        return None
    from donna_nas.nn.ops import count_params
    from donna_nas.tasks.depth.networks import DepthDecoder

    teacher_params = json.loads((teacher_run / "model.json").read_text())["params"]
    widest = [max(b.out_channels) for b in space.blocks]
    cap = int(ratio * teacher_params) - count_params(DepthDecoder(widest))
    smallest = min(space.params(space.sample(i)) for i in range(200))
    if cap < smallest:
        raise UserError(f"max_params_ratio {ratio}: {ratio} × {teacher_params:,} teacher params leaves "
                        f"{cap:,} for the encoder, below the space's small architectures; raise it")
    return cap


# ------------------------------------------------------------------------------ table + report
BASELINE_LABELS = {"constant": "constant depth (no image)", "prior": "per-pixel prior (no image)"}


def _label(name: str, run: Path) -> str:
    info = json.loads((run / "model.json").read_text())
    steps = info.get("steps")
    if name == "teacher":
        if info.get("shipped"):
            return f"teacher: {info['shipped']} (shipped {info['backbone']}, {steps} steps)"
        return f"teacher: X-Distill {info['backbone']} ({steps} steps, trained here)"
    cfg = (run / "config.yaml").read_text()
    how = "distillation + X-Distill" if "distill_from: null" not in cfg else "X-Distill"
    return f"searched encoder ({how}, {steps} steps from distilled blocks)"


def time_side_by_side(out: Path, size: tuple[int, int], repeats: int) -> Path:
    """``OUT/fps_side_by_side.json``: the teacher's and the searched model's exports timed in one
    round-robin measurement (``time_exports_side_by_side``), the FPS the table shows."""
    from donna_nas.export.pipeline import time_exports_side_by_side

    path = out / "fps_side_by_side.json"
    time_exports_side_by_side({name: out / name for name in ("teacher", "searched")}, size, repeats, path)
    return path


def _row(name: str, run: Path) -> dict[str, Any]:
    exp = json.loads((run / "export" / "export.json").read_text())
    side = run.parent / "fps_side_by_side.json"
    rec = json.loads(side.read_text()) if side.is_file() else {}  # timed beside the other model
    fps = {p: rec.get(f"{name}/{p}", exp[p])["fps"] for p in ("fp32", "int8")}
    row = {"model": name, "label": _label(name, run), "params": int(exp["params"]),
           "fps_fp32": fps["fp32"], "fps_int8": fps["int8"]}
    for prec in ("fp32", "int8"):
        for k in METRICS:
            row[f"{k}_{prec}"] = exp[prec]["metrics"][k]
    return row


def _baseline_rows(run: Path) -> list[dict[str, Any]]:
    """Constant depth and the per-pixel prior on the same test split (they look at no image)."""
    path = run / "metrics.json"
    base = json.loads(path.read_text()).get("baselines", {}) if path.is_file() else {}
    rows = []
    for key in ROWS[2:]:
        if key not in base:
            continue
        # None: not applicable (a baseline has no size, speed or INT8 version)
        row = {"model": key, "label": BASELINE_LABELS[key], "params": None, "fps_fp32": None, "fps_int8": None}
        for k in METRICS:
            row[f"{k}_fp32"], row[f"{k}_int8"] = base[key][k], None
        rows.append(row)
    return rows


def table_rows(out: Path) -> list[dict[str, Any]]:
    """The rows ``teacher, searched, constant, prior`` (baselines on the teacher's test split)."""
    return [_row("teacher", out / "teacher"), _row("searched", out / "searched"), *_baseline_rows(out / "teacher")]


def write_table_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``OUT/quickstart_table.csv``: ``TABLE_COLUMNS``; empty cells where a row has no value."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TABLE_COLUMNS)
    for r in rows:
        vals = {**r, "a1": r.get("a1_fp32")}
        w.writerow(["" if vals.get(c) is None else vals[c] for c in TABLE_COLUMNS])
    write_text_atomic(path, buf.getvalue())
    return path


def beats(row: dict[str, Any], baseline: dict[str, Any]) -> bool:
    """Whether a table row beats a baseline row, by evaluate's rule on the fp32 metrics."""
    from donna_nas.tasks.depth.evaluate import beats as metrics_beat

    fp32 = lambda r: {k: r[f"{k}_fp32"] for k in ("abs_rel", "sq_rel")}  # noqa: E731
    return metrics_beat(fp32(row), fp32(baseline))


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """The quickstart table (the CSV's columns) and, for each model, whether it beats each baseline."""
    head = ("| model | params (encoder + decoder) | FPS fp32 | FPS int8 | Sq Rel fp32 | Sq Rel int8 | "
            "abs_rel fp32 | δ<1.25 fp32 |")
    lines = [head, "|---|---|---|---|---|---|---|---|"]

    def f(v: float | None, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)  # None: not applicable (baselines)

    for r in rows:
        params = "–" if r["params"] is None else f"{r['params'] / 1e6:.2f}M"
        lines.append(f"| {r['label']} | {params} | {f(r['fps_fp32'], '.1f')} | "
                     f"{f(r['fps_int8'], '.1f')} | {f(r['sq_rel_fp32'], '.4f')} | {f(r['sq_rel_int8'], '.4f')} | "
                     f"{f(r['abs_rel_fp32'], '.4f')} | {f(r['a1_fp32'], '.3f')} |")
    models = [r for r in rows if r["params"] is not None]
    base = [r for r in rows if r["params"] is None]
    lines.append("")
    for r in models:
        won = [b["label"] for b in base if beats(r, b)]
        lost = [b["label"] for b in base if not beats(r, b)]
        if lost:
            lines.append(f"- **{r['label']} does not beat the {' nor the '.join(lost)}** (abs_rel and Sq Rel, fp32)"
                         + (f"; it beats the {won[0]}." if won else "."))
        elif won:
            lines.append(f"- {r['label']} beats the {' and the '.join(won)} (abs_rel and Sq Rel, fp32).")
    if len(models) >= 2:
        t, s = models[:2]
        lines += ["", f"Ratios (searched / teacher): params {s['params'] / t['params']:.2f}, "
                      f"INT8 FPS {s['fps_int8'] / t['fps_int8']:.2f}, "
                      f"Sq Rel fp32 {s['sq_rel_fp32'] / t['sq_rel_fp32']:.2f}. "
                      f"INT8 vs fp32 Sq Rel: teacher {100 * (t['sq_rel_int8'] / t['sq_rel_fp32'] - 1):+.1f}%, "
                      f"searched {100 * (s['sq_rel_int8'] / s['sq_rel_fp32'] - 1):+.1f}%."]
    return "\n".join(lines) + "\n"


def selection_markdown(selected: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> list[str]:
    """The report's selection lines: the architecture, its predicted metric, its latency (and
    whether it was measured, modelled or looked up), the latency bound and where it came from,
    encoder and whole-model params, and the predictor's Kendall τ with the warning below 0.5."""
    from donna_nas.predictor.quality import PredictorQuality

    nan = float("nan")
    bound = selected.get("latency_bound") or {}
    how = selected.get("latency_ms_how") or "latency source: " + str(selected.get("latency_source", ""))
    # whole-model params of the searched row: the quickstart's rows (``params``), or a second row
    # with ``params_M`` (the paper table's)
    model_params, params_m = "", None
    for r in rows or []:
        if r.get("model") == "searched" and r.get("params") is not None:
            params_m = r["params"] / 1e6
    if params_m is None and rows and len(rows) > 1 and rows[1].get("params_M") is not None:
        params_m = rows[1]["params_M"]
    if params_m is not None:
        model_params = f", {params_m:.2f}M whole-model params (encoder + decoder)"
    lines = [f"Selected architecture (latency source: {selected.get('latency_source', '')}):", "",
             f"`{selected['arch']}`", "",
             f"predicted {selected.get('metric_name', 'metric')} {selected.get('predicted_metric', nan):.4f}, "
             f"{selected.get('latency_ms', nan):.3g} ms ({how}), "
             f"{selected.get('params', 0) / 1e6:.2f}M encoder params{model_params}.", "",
             f"Selection: the best predicted architecture with "
             f"{bound.get('description', 'no latency bound')}"
             + (f", encoder params ≤ {selected['constraints']['max_params']:,}"
                if (selected.get("constraints") or {}).get("max_params") else "")
             + ". Params are reported, not used to select.", ""]
    dep = selected.get("deployed_check")
    if dep and selected.get("deployed_latency_ms") is not None:
        t = selected.get("teacher_deployed_ms")
        bound_ms = selected.get("deployed_bound_ms", dep["bound_ms"])
        confirm = int(dep.get("confirm", 1))
        beside = "timed beside it" + (f" (its median of {confirm} pairings)" if confirm > 1 else "")
        speed = f", {t / selected['deployed_latency_ms']:.2f}× the teacher's {t:.3g} ms {beside}" if t else ""
        median = selected.get("teacher_deployed_median_ms")
        median = (f"; the teacher's median over the {confirm * len(dep['checked'])} pairings {median:.3g} ms"
                  if median else "")
        lines += [f"Deployed check: the whole network runs {selected['deployed_latency_ms']:.3g} ms{speed} "
                  f"({dep['how']}); bound {bound_ms:.3g} ms for that timing{median}; {len(dep['checked'])} of "
                  f"{dep['candidates']} front candidates timed (bisection, best predicted first).", ""]
    q = selected.get("predictor_quality") or {}
    pq = PredictorQuality(q.get("kendall_tau"), q.get("tau_kind"), q.get("n"), constant=q.get("constant") is True)
    lines.append(f"**{pq.warning()}**" if pq.warning() else pq.describe() + ".")
    return lines


def _world_line(cfg: QuickstartConfig, out: Path) -> str:
    size = f"{cfg.size[0]}x{cfg.size[1]}"
    world = (f"Synthetic world version {cfg.world_version}, {cfg.drives} drives × {cfg.frames} frames at "
             f"{size}, seed {cfg.world_seed}")
    if cfg.train_teacher:
        return (f"{world}; the segmentation and depth teachers were trained here "
                f"(`--train-teacher`), the searched encoder finetuned with X-Distill"
                + (" and output distillation from the teacher." if cfg.distill_weight else "."))
    card = out / "teacher" / "card.json"
    tw = (json.loads(card.read_text()).get("world") or {}) if card.is_file() else {}
    same = (tw.get("drives"), tw.get("frames"), list(tw.get("size") or []), tw.get("seed"), tw.get("version")) == \
        (cfg.drives, cfg.frames, list(cfg.size), cfg.world_seed, cfg.world_version)
    trained_on = ("the world the shipped teacher was trained on" if same else
                  f"the shipped teacher was trained on {tw.get('drives')} drives × {tw.get('frames')} frames, "
                  f"seed {tw.get('seed')}, version {tw.get('version')}")
    return (f"{world} ({trained_on}). Teacher: the shipped `{cfg.teacher}` (no teacher training); "
            f"X-Distill from the shipped `{cfg.seg_teacher}`; the searched encoder is finetuned from its "
            f"distilled blocks with " + (f"output distillation from the teacher (weight {cfg.distill_weight:g}) "
                                         "+ " if cfg.distill_weight else "") + "self-supervision + X-Distill.")


def _final_threads_line(out: Path) -> str:
    path = out / "final_threads.json"
    if not path.is_file():  # a run from before the record existed
        return "the final finetune's threads were not recorded"
    got = json.loads(path.read_text())
    return f"the final finetune on {got['threads']} torch thread(s) ({got['why']}; `--final-threads`)"


def write_report(out: Path, rows: list[dict[str, Any]], timings: dict[str, float],
                 cfg: QuickstartConfig) -> Path:
    write_table_csv(out / "quickstart_table.csv", rows)
    selected = json.loads((out / "supernet" / "selected.json").read_text())
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for src, dst in ((out / "supernet" / "plots" / "pareto.png", plots / "pareto.png"),
                     (out / "searched" / "plots" / "depth_grid.png", plots / "depth_searched.png"),
                     (out / "teacher" / "plots" / "depth_grid.png", plots / "depth_teacher.png")):
        if src.is_file():
            shutil.copyfile(src, dst)
    total = sum(timings.values())
    md = [
        "# donna-nas quickstart", "",
        _world_line(cfg, out), "",
        f"Search space `{cfg.space}`; FPS: ONNX Runtime, this CPU, batch 1, 1 thread, the teacher and the "
        f"searched model timed side by side (`fps_side_by_side.json`). Sq Rel and abs_rel: "
        f"Eigen protocol on the synthetic test split (drive-disjoint), through ONNX Runtime. "
        f"The same table: `quickstart_table.csv`.", "",
        table_markdown(rows),
        *selection_markdown(selected, rows),
        "", "## Pareto front", "", "![pareto](plots/pareto.png)", "",
        "## Depth maps", "", "Searched model:", "", "![searched](plots/depth_searched.png)", "",
        "Teacher:", "", "![teacher](plots/depth_teacher.png)", "",
        "## Time per stage", "", "| stage | seconds |", "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        f"| total | {total:.0f} |", "",
        f"build-supernet ran its jobs in {cfg.workers} process(es) of one torch thread; {_final_threads_line(out)}.",
        "",
        "Stage reports: `teacher/report.md`, `supernet/report.md`, `searched/report.md`, "
        "`*/export/export.md`.",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(md) + "\n")
    return path
