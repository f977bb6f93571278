"""Export a classifier to ONNX (input ``image`` 1x3xHxW in [0, 1], output ``logits``), quantise it
to static INT8 QDQ with the toolkit's depth-export settings, check top-1 through ONNX Runtime and
time batch-1 FPS. Files go to ``RUN/export/``; figures into ``RUN/metrics.json`` and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from donna_nas.export.onnx import export_image_model, measure_fps, ort_session, quantize_qdq

__all__ = ["export_classifier_onnx", "onnx_logits", "export_run"]


def export_classifier_onnx(model: nn.Module, size: tuple[int, int], path: str | Path) -> Path:
    """Write the classifier (1x3xHxW ``image`` → ``logits``) as ONNX; atomic."""
    return export_image_model(model, size, path, "logits")


def onnx_logits(path: str | Path, images: np.ndarray) -> np.ndarray:
    """Batch-1 ONNX Runtime logits of (N,3,H,W) images (the graph has a fixed batch of 1)."""
    sess = ort_session(path)
    return np.concatenate([sess.run(None, {"image": img[None].astype(np.float32)})[0] for img in images])


def export_run(run: str | Path, data: str | None = None, split: str | None = None, calib: int = 64,
               threads: int = 1, repeats: int = 30) -> dict[str, Any]:
    """fp32 + INT8 ONNX of a finished run with top-1 on the evaluation split and FPS."""
    from donna_nas.data.imagefolder import load_split
    from donna_nas.tasks.classify.evaluate import default_eval_split, evaluate_run, topk_accuracy
    from donna_nas.tasks.classify.train import _load_config, load_classifier, predict_logits

    run = Path(run)
    model, info = load_classifier(run)
    data = data or _load_config(run).data
    split = split or default_eval_split(data)
    size = (info["height"], info["width"])
    x, y, _ = load_split(data, split, size)
    xc, _, _ = load_split(data, "train", size, limit=calib)
    out = run / "export"
    fp32 = export_classifier_onnx(model, size, out / "model_fp32.onnx")
    int8 = quantize_qdq(fp32, out / "model_int8.onnx", list(xc.numpy()))
    ref = predict_logits(model, x)
    res: dict[str, Any] = {"split": split, "torch_top1": topk_accuracy(ref, y, 1)}
    for name, path in (("fp32", fp32), ("int8", int8)):
        logits = onnx_logits(path, x.numpy())
        fps = measure_fps(path, size, threads=threads, repeats=repeats)
        res[name] = {"top1": topk_accuracy(logits, y, 1), "fps": fps.fps, "median_ms": fps.median_ms,
                     "threads": threads, "file": str(path), "max_abs_logit_diff": float(np.abs(logits - ref.numpy()).max())}
    evaluate_run(run, data, split, extra={"export": res})
    return res
