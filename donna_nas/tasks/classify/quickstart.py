"""The classification pipeline end to end on the shipped digits (``donna-nas quickstart-classify``).

digits (ImageFolder) → ResNet18 teacher → build-supernet --task classify (tiny space) → exact
search on ONNX Runtime latency of this CPU → finetune the selected architecture from its
distilled blocks with KD → ONNX fp32 + INT8 export → a summary table (``OUT/summary.md``).

Each stage is skipped when its output already exists, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from donna_nas.errors import UserError
from donna_nas.runtime.io import write_text_atomic

__all__ = ["ClassifyQuickstart", "run_classify_quickstart"]


@dataclass
class ClassifyQuickstart:
    """Scale of each stage; ``tiny()`` is a smoke-test scale (well under a minute on one core)."""

    size: int = 32
    teacher_epochs: int = 10
    bkd_steps: int = 200
    train_frames: int = 1024
    val_frames: int = 256
    archs: int = 16
    test_archs: int = 6
    ft_steps: int = 100
    epochs: int = 10
    seed: int = 0

    @classmethod
    def tiny(cls) -> "ClassifyQuickstart":
        return cls(teacher_epochs=1, bkd_steps=20, train_frames=128, val_frames=64, archs=4, test_archs=0,
                   ft_steps=15, epochs=2)


def run_classify_quickstart(out: str | Path, cfg: ClassifyQuickstart | None = None,
                            log: Callable[[str], None] = print) -> dict[str, Any]:
    from donna_nas.data.imagefolder import write_digits_imagefolder
    from donna_nas.distill.pipeline import SupernetConfig, build_supernet
    from donna_nas.search.run import run_search
    from donna_nas.space import load_space
    from donna_nas.tasks.classify.export import export_run
    from donna_nas.tasks.classify.train import ClassifyConfig, train_classifier

    cfg = cfg or ClassifyQuickstart()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = cfg.size
    data, teacher, run, final = out / "digits", out / "teacher", out / "supernet", out / "final"
    if not (data / "test").is_dir():
        log("data: writing scikit-learn's digits as an ImageFolder dataset")
        write_digits_imagefolder(data, s, cfg.seed)
    if not (teacher / "model.json").is_file():
        log("teacher: training ResNet18")
        resume = (teacher / "config.yaml").is_file()
        train_classifier(None if resume else ClassifyConfig(data=str(data), backbone="resnet18", height=s,
                                                            width=s, epochs=cfg.teacher_epochs, kd_weight=0.0,
                                                            seed=cfg.seed), teacher, resume=resume)
    if not (run / "predictor.json").is_file():
        log("build-supernet: blockwise distillation of the tiny space + top-1 predictor")
        space = dataclasses.replace(load_space("tiny"), input_size=(s, s))
        build_supernet(space, run, SupernetConfig(
            teacher=str(teacher), data=str(data), task="classify", height=s, width=s,
            train_frames=cfg.train_frames, val_frames=cfg.val_frames, bkd_steps=cfg.bkd_steps, bkd_batch=32,
            predictor_archs=cfg.archs, predictor_test=cfg.test_archs, ft_steps=cfg.ft_steps, seed=cfg.seed),
            resume=(run / "config.yaml").is_file())
    if not (run / "selected.json").is_file():
        log("search: exact Pareto front, per-op ONNX Runtime latency of this CPU")
        found = run_search(run, measure="ort", input_size=(s, s), log=log)
        if found.selected is None:
            raise UserError(f"{run}: the search selected no architecture")
    arch = json.loads((run / "selected.json").read_text())["arch"]
    if not (final / "model.json").is_file():
        log(f"finetune: {arch} from its distilled blocks, KD from the teacher")
        resume = (final / "config.yaml").is_file()
        train_classifier(None if resume else ClassifyConfig(data=str(data), backbone=arch, space=str(run),
                                                            teacher=str(teacher), height=s, width=s,
                                                            epochs=cfg.epochs, seed=cfg.seed), final, resume=resume)
    rows = {}
    for name, r in (("teacher ResNet18", teacher), ("searched (tiny space)", final)):
        m = json.loads((r / "metrics.json").read_text()) if (r / "metrics.json").is_file() else {}
        if "export" not in m:
            log(f"export: {r.name} → ONNX fp32 + INT8")
            export_run(r, str(data))
            m = json.loads((r / "metrics.json").read_text())
        rows[name] = m
    lines = ["| model | params | top-1 | ONNX fp32 top-1 | ONNX INT8 top-1 | FPS fp32 | FPS INT8 |",
             "|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        e = m["export"]
        lines.append(f"| {name} | {m['params']:,} | {m['top1']:.4f} | {e['fp32']['top1']:.4f} | "
                     f"{e['int8']['top1']:.4f} | {e['fp32']['fps']:.0f} | {e['int8']['fps']:.0f} |")
    table = "\n".join(lines)
    write_text_atomic(out / "summary.md", f"# Classification quickstart (digits, {s}x{s}, test split)\n\n"
                      f"Searched architecture: `{arch}`\n\n{table}\n")
    return {"arch": arch, "table": table, "metrics": rows}
