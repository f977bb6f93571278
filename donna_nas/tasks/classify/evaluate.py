"""Top-1 / top-5 accuracy, confusion matrix (CSV + PNG) and ``report.md`` of a classification run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path, write_json_atomic, write_text_atomic

__all__ = ["topk_accuracy", "confusion_matrix", "evaluate_logits", "evaluate_run", "plot_confusion"]


def topk_accuracy(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest logits (k capped at #classes)."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, int), np.asarray(pred, int)), 1)
    return cm


def evaluate_logits(logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(labels).long()
    metrics = {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
               "nll": float(torch.nn.functional.cross_entropy(logits, labels)), "images": int(len(labels))}
    cm = confusion_matrix(logits.argmax(1).numpy(), labels.numpy(), logits.shape[1])
    return metrics, cm


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = min(12.0, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
        ax.set_xticks(range(n), classes, fontsize=7, rotation=90)
        ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def default_eval_split(data: str | Path) -> str:
    return "test" if (Path(data) / "test").is_dir() else "val"


def evaluate_run(run: str | Path, data: str | Path | None = None, split: str | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate a finished run on ``DATA/<split>`` (default: test if present, else val); writes
    ``metrics.json``, ``tables/confusion.csv``, ``plots/confusion.png`` and ``report.md``."""
    from donna_nas.data.imagefolder import load_split
    from donna_nas.tasks.classify.train import _load_config, load_classifier, predict_logits

    run = Path(run)
    model, info = load_classifier(run)
    cfg = _load_config(run)
    data = data or cfg.data
    if not data:
        raise UserError(f"{run}: no dataset recorded; pass --data")
    split = split or default_eval_split(data)
    x, y, classes = load_split(data, split, (info["height"], info["width"]))
    if classes != info["classes"]:
        raise UserError(f"{data}/{split}: classes {classes[:5]}... differ from the model's {info['classes'][:5]}...")
    metrics, cm = evaluate_logits(predict_logits(model, x), y)
    metrics.update(split=split, params=info["params"])
    metrics.update(extra or {})
    prev = {}
    if (run / "metrics.json").is_file():
        try:
            prev = json.loads((run / "metrics.json").read_text())
        except json.JSONDecodeError:
            prev = {}
    prev.update(metrics)
    write_json_atomic(run / "metrics.json", prev)
    import pandas as pd

    with atomic_path(run / "tables" / "confusion.csv") as tmp:
        pd.DataFrame(cm, index=classes, columns=classes).to_csv(tmp)
    plot_confusion(cm, classes, run / "plots" / "confusion.png",
                   f"{info['backbone'][:40]} on {split}: top-1 {metrics['top1']:.3f}")
    write_report(run, info, cfg, prev)
    return prev


def write_report(run: Path, info: dict[str, Any], cfg, metrics: dict[str, Any]) -> None:
    lines = [f"# Classification run `{run.name}`", "",
             f"- backbone: `{info['backbone']}`" + (f" (space `{info['space']}`)" if info.get("space") else ""),
             f"- init: {info.get('init')}; teacher: {info.get('teacher') or 'none'}",
             f"- classes: {info['num_classes']}; input {info['height']}x{info['width']}; params {info['params']:,}",
             f"- training: {cfg.epochs} epochs (max steps {cfg.max_steps}), batch {cfg.batch}, AdamW lr {cfg.lr} "
             f"cosine, label smoothing {cfg.label_smoothing}, KD weight {cfg.kd_weight} at T={cfg.kd_temperature}",
             "", f"## Accuracy ({metrics.get('split')} split, {metrics.get('images')} images)", "",
             "| metric | value |", "|---|---|"]
    for k in ("top1", "top5", "nll"):
        if k in metrics:
            lines.append(f"| {k} | {metrics[k]:.4f} |")
    ex = metrics.get("export")
    if ex:
        lines += ["", "## Exported (ONNX Runtime, this CPU, batch 1)", "",
                  "| model | top-1 | FPS | median ms | threads |", "|---|---|---|---|---|"]
        for name in ("fp32", "int8"):
            if name in ex:
                e = ex[name]
                lines.append(f"| {name} | {e['top1']:.4f} | {e['fps']:.1f} | {e['median_ms']:.3f} | {e['threads']} |")
    lines += ["", "![confusion matrix](plots/confusion.png)", ""]
    write_text_atomic(run / "report.md", "\n".join(lines))
