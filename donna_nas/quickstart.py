"""`donna-nas quickstart`: the whole system, end to end, on the embedded synthetic world.

data → segmentation teacher → ResNet depth teacher (X-Distill) → build-supernet (blockwise
distillation + accuracy predictor) → latency of this CPU (ONNX Runtime INT8, a measured sample
of ops + the op latency model) → exact Pareto search, selecting the best predicted architecture
whose latency on that source is ≤ the teacher's / 1.5 (``speedup``; the teacher's encoder timed
the same way, ``donna_nas.latency.teacher``) → finetune the selected encoder with X-Distill from
its distilled blocks → export fp32 + INT8 → a Table-1-style table and report.md.

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

METRICS = ("abs_rel", "sq_rel", "rmse", "a1")


@dataclass
class QuickstartConfig:
    """Scale of each stage. ``small()`` is the README's default, ``tiny()`` the CI smoke run."""

    size: tuple[int, int] = (96, 320)
    drives: int = 3
    frames: int = 50
    seed: int = 0
    space: str = "donna_depth_lite"
    seg_epochs: int = 4
    teacher: str = "resnet18"
    teacher_epochs: int = 6
    batch: int = 4
    xdistill_weight: float = 0.01  # 0.1 let the cross-entropy swamp the photometric loss at CPU scale (docs/depth.md)
    bkd_steps: int = 60
    bkd_size: tuple[int, int] = (64, 192)
    predictor_archs: int = 8
    predictor_test: int = 3
    ft_steps: int = 30
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
    # an extra params constraint, off by default (params are reported, they do not select): the
    # selected model's params, decoder included, stay under this share of the teacher's (the
    # paper: 3.7M / 32M = 0.12 of ResNet50); the search bounds encoder params by it minus the
    # decoder of the space's widest encoder
    max_params_ratio: float | None = None
    final_epochs: int = 6
    calib: int = 16
    fps_repeats: int = 20
    lr_step: int = 4

    @classmethod
    def small(cls) -> "QuickstartConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "QuickstartConfig":
        return cls(size=(64, 192), drives=3, frames=9, space="tiny", seg_epochs=1, teacher_epochs=1,
                   batch=2, bkd_steps=3, bkd_size=(64, 192), predictor_archs=3, predictor_test=0,
                   ft_steps=2, latency_archs=2, final_epochs=1, calib=2, fps_repeats=3)

    def latency_target(self):
        """The ``LatencyTarget`` of ``speedup`` / ``max_latency_ms`` / ``target_fps``."""
        from donna_nas.search.select import LatencyTarget

        return LatencyTarget(self.max_latency_ms, self.target_fps, self.speedup, self.teacher_latency_ms)


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


def run_quickstart(out: str | Path = "runs/quickstart", cfg: QuickstartConfig | None = None,
                   latency_table: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage; returns the Table-1-style rows."""
    from donna_nas.runtime.io import remove_stale_temp

    cfg = cfg or QuickstartConfig.small()
    out = Path(out).absolute()  # stage configs store absolute paths: resumable from any directory
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp(out)  # temporary files of writes a kill interrupted
    check_latency_target(cfg, latency_table, out)  # before any training: a target that cannot resolve
    saved = out / "quickstart.json"
    settings = dataclasses.asdict(cfg) | {"latency_table": latency_table}
    if saved.is_file():
        old = json.loads(saved.read_text())
        if old != json.loads(json.dumps(settings)):
            raise UserError(f"{saved}: this folder holds a quickstart with other settings; "
                            f"use another --out or delete {out}")
    else:
        write_json_atomic(saved, settings)
    space = _space(cfg)
    data, seg, teacher = out / "data", out / "seg_teacher.safetensors", out / "teacher"
    supernet, searched = out / "supernet", out / "searched"
    size_arg = f"{cfg.size[0]}x{cfg.size[1]}"

    def synth():
        from donna_nas.data.synth import synthesize

        synthesize(data, cfg.drives, cfg.frames, cfg.size, cfg.seed, progress=progress)

    def seg_teacher():
        from donna_nas.tasks.depth.seg_teacher import train_seg_teacher

        train_seg_teacher(data, seg, size=cfg.size, epochs=cfg.seg_epochs, batch=cfg.batch,
                          seed=cfg.seed, progress=progress)

    def depth_run(run: Path, backbone: str, space_arg: str | None, epochs: int) -> None:
        from donna_nas.tasks.depth.evaluate import evaluate_run
        from donna_nas.tasks.depth.run import DepthConfig
        from donna_nas.tasks.depth.train import train_depth

        dcfg = DepthConfig(data=str(data), backbone=backbone, space=space_arg, height=cfg.size[0],
                           width=cfg.size[1], epochs=epochs, batch=cfg.batch, act="relu",
                           xdistill=True, seg_teacher=str(seg), xdistill_weight=cfg.xdistill_weight,
                           seed=cfg.seed, lr_step=cfg.lr_step, checkpoint_every=50)
        from donna_nas.tasks.depth.run import has_checkpoint

        # a run killed before its first checkpoint starts over (same seed, same result)
        train_depth(dcfg, run, resume=has_checkpoint(run), progress=progress, log=_log)
        evaluate_run(run)

    def build():
        from donna_nas.distill.pipeline import SupernetConfig, build_supernet

        scfg = SupernetConfig(teacher=str(teacher), data=str(data), height=cfg.bkd_size[0],
                              width=cfg.bkd_size[1], bkd_steps=cfg.bkd_steps, bkd_batch=8,
                              predictor_archs=cfg.predictor_archs,
                              predictor_test=cfg.predictor_test, ft_steps=cfg.ft_steps,
                              ft_batch=cfg.batch, seed=cfg.seed)
        build_supernet(space, supernet, scfg, resume=(supernet / "config.yaml").is_file(),
                       progress=progress)

    def do_search():
        run_search(space, supernet, cfg, latency_table, teacher, progress)

    def finetune():
        depth_run(searched, str(supernet), None, cfg.final_epochs)

    def export(run: Path) -> Callable[[], Any]:
        def go():
            from donna_nas.export.pipeline import export_run

            export_run(run, int8=True, calib=cfg.calib, fps_repeats=cfg.fps_repeats)
        return go

    stages = [
        Stage("synthetic world", lambda: (data / "synth.json").is_file() and (data / "splits").is_dir(), synth),
        Stage("segmentation teacher", seg.is_file, seg_teacher),
        Stage(f"{cfg.teacher} depth teacher (X-Distill)", lambda: (teacher / "metrics.json").is_file(),
              lambda: depth_run(teacher, cfg.teacher, None, cfg.teacher_epochs)),
        Stage("build-supernet", lambda: (supernet / "predictor.json").is_file(), build),
        Stage("latency + search", lambda: (supernet / "selected.json").is_file(), do_search),
        Stage("finetune searched encoder (X-Distill)", lambda: (searched / "metrics.json").is_file(),
              finetune),
        Stage("export teacher", lambda: (teacher / "export" / "export.json").is_file(), export(teacher)),
        Stage("export searched", lambda: (searched / "export" / "export.json").is_file(),
              export(searched)),
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
    write_report(out, rows, timings, cfg, size_arg)
    return {"rows": rows, "timings": timings}


def run_search(space, supernet: Path, cfg: QuickstartConfig, latency_table: str | None,
               teacher: Path, progress: bool) -> None:
    """Latency source (a table, filled in by the op latency model where it lacks ops, or this
    CPU measured + modelled) → exact/NSGA-II search, through the library's search run."""
    from donna_nas.search.objectives import Constraints
    from donna_nas.search.run import run_search as search_run

    cap = encoder_params_cap(space, teacher, cfg.max_params_ratio) if cfg.max_params_ratio else None
    measure = None if latency_table else {"fp32": "ort", "int8": "ort-int8"}[cfg.precision]
    out = search_run(supernet, latency_table=latency_table, measure=measure, space=space,
                     constraints=Constraints(max_params=cap), method="auto", seed=cfg.seed,
                     measure_archs=cfg.latency_archs, fill_missing=True,
                     measure_progress=progress, log=_log, target=cfg.latency_target(),
                     teacher=str(teacher))
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

        path = resolve_table(latency_table)
        teacher_latency("table", LookupTable.from_csv(path), cfg.teacher, cfg.size, out, path.name)


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
def _row(name: str, run: Path) -> dict[str, Any]:
    exp = json.loads((run / "export" / "export.json").read_text())
    row = {"model": name, "params_M": exp["params"] / 1e6,
           "fps_fp32": exp["fp32"]["fps"], "fps_int8": exp["int8"]["fps"]}
    for prec in ("fp32", "int8"):
        for k in METRICS:
            row[f"{k}_{prec}"] = exp[prec]["metrics"][k]
    return row


def _baseline_rows(run: Path) -> list[dict[str, Any]]:
    """Constant depth and the per-pixel prior on the same test split (they look at no image)."""
    path = run / "metrics.json"
    base = json.loads(path.read_text()).get("baselines", {}) if path.is_file() else {}
    nan = None  # not applicable: a baseline has no size, speed or INT8 version
    names = {"constant": "constant depth (no image)", "prior": "per-pixel prior (no image)"}
    rows = []
    for key, m in base.items():
        row = {"model": names.get(key, key), "params_M": nan, "fps_fp32": nan, "fps_int8": nan}
        for k in METRICS:
            row[f"{k}_fp32"], row[f"{k}_int8"] = m[k], nan
        rows.append(row)
    return rows


def table_rows(out: Path) -> list[dict[str, Any]]:
    teacher_name = json.loads((out / "teacher" / "model.json").read_text())["backbone"]
    return [_row(f"X-Distill ({teacher_name})", out / "teacher"),
            _row("X-Distill (searched encoder)", out / "searched"), *_baseline_rows(out / "teacher")]


def table_markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| model | model params (M, encoder + decoder) | FPS fp32 | FPS int8 | Sq Rel fp32 | Sq Rel int8 | "
            "abs_rel fp32 | abs_rel int8 | δ<1.25 fp32 |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]

    def f(v: float, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)  # None: not applicable (baselines)

    for r in rows:
        lines.append(f"| {r['model']} | {f(r['params_M'], '.2f')} | {f(r['fps_fp32'], '.1f')} | "
                     f"{f(r['fps_int8'], '.1f')} | {f(r['sq_rel_fp32'], '.4f')} | {f(r['sq_rel_int8'], '.4f')} | "
                     f"{f(r['abs_rel_fp32'], '.4f')} | {f(r['abs_rel_int8'], '.4f')} | {f(r['a1_fp32'], '.3f')} |")
    base = {r["model"]: r for r in rows[2:]}
    for r in rows[:2]:
        lost = [b for b, m in base.items() if not (r["abs_rel_fp32"] < m["abs_rel_fp32"] and r["sq_rel_fp32"] < m["sq_rel_fp32"])]
        if lost:
            lines.append(f"\n**{r['model']} does not beat the {' and the '.join(lost)} on abs_rel and Sq Rel.**")
    if len(rows) >= 2:
        t, s = rows[:2]
        lines += ["", f"Ratios (searched / teacher): params {s['params_M'] / t['params_M']:.2f}, "
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
    model_params = ""
    if rows and len(rows) > 1 and rows[1].get("params_M") is not None:
        model_params = f", {rows[1]['params_M']:.2f}M whole-model params (encoder + decoder)"
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
    q = selected.get("predictor_quality") or {}
    pq = PredictorQuality(q.get("kendall_tau"), q.get("tau_kind"), q.get("n"))
    lines.append(f"**{pq.warning()}**" if pq.warning() else pq.describe() + ".")
    return lines


def write_report(out: Path, rows: list[dict[str, Any]], timings: dict[str, float],
                 cfg: QuickstartConfig, size_arg: str) -> Path:
    import csv

    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
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
        f"Synthetic world, {cfg.drives} drives × {cfg.frames} frames at {size_arg}; search space "
        f"`{cfg.space}`; FPS: ONNX Runtime, this CPU, batch 1, 1 thread. Sq Rel and abs_rel: Eigen "
        f"protocol on the synthetic test split (drive-disjoint), through ONNX Runtime.", "",
        table_markdown(rows),
        *selection_markdown(selected, rows),
        "", "## Pareto front", "", "![pareto](plots/pareto.png)", "",
        "## Depth maps", "", "Searched model:", "", "![searched](plots/depth_searched.png)", "",
        "Teacher:", "", "![teacher](plots/depth_teacher.png)", "",
        "## Time per stage", "", "| stage | seconds |", "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
        f"| total | {total:.0f} |", "",
        "Stage reports: `teacher/report.md`, `supernet/report.md`, `searched/report.md`, "
        "`*/export/export.md`.",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(md) + "\n")
    return path
