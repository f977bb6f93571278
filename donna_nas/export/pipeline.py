"""`donna-nas export RUN`: ONNX fp32 (+ INT8 QDQ) of a trained depth run, checked and evaluated.

What it writes into ``RUN/export/``: ``model.onnx`` (opset 17, image → sigmoid disparity),
``model_int8.onnx`` (static QDQ, calibrated on training frames, disparity sigmoid kept in float),
``export.json`` (max |ONNX − PyTorch|, Eigen metrics of each ONNX model computed by ONNX Runtime
through the same evaluation code as PyTorch models, FPS at batch 1) and ``export.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from donna_nas.errors import UserError
from donna_nas.export.onnx import (FpsResult, check_stem_weight_bits, export_depth_onnx, max_abs_diff_vs_torch, measure_fps,
                                   image_conv_nodes, ort_session, predict_disparities, quantize_qdq,
                                   sigmoid_nodes)
from donna_nas.runtime.io import write_json_atomic, write_text_atomic

METRICS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


@dataclass
class ExportResult:
    run: str
    size: tuple[int, int]
    params: int
    max_abs_diff: float
    fp32: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _frames(data: str, split: str, size: tuple[int, int], limit: int | None = None) -> np.ndarray:
    from donna_nas.data.kitti import KittiRawDataset

    ds = KittiRawDataset(data, split, size=size, frame_ids=(0,), train=False)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise UserError(f"{data}: split {split!r} has no frames to export/evaluate with")
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int) if limit else range(n)
    return np.stack([ds[int(i)]["images"][0].numpy() for i in idx])


def _eigen(onnx_path: Path, images: np.ndarray, gts, info: dict) -> dict[str, float]:
    from donna_nas.tasks.depth.geometry import disp_to_depth
    from donna_nas.tasks.depth.metrics import evaluate_disparities

    raw = predict_disparities(onnx_path, images)
    scaled, _ = disp_to_depth(torch.from_numpy(raw), info["min_depth"], info["max_depth"])
    metrics, _ = evaluate_disparities(scaled.numpy(), gts, crop="garg", median_scaling=True)
    return {k: float(metrics[k]) for k in METRICS}


def export_run(run: str | Path, int8: bool = True, calib: int = 32, size: tuple[int, int] | None = None,
               threads: int = 1, evaluate: bool = True, data: str | None = None,
               fps_repeats: int = 30, force: bool = False, float_first_conv: bool = False,
               stem_weight_bits: int = 7) -> ExportResult:
    """Export RUN's depth network; optionally quantise, evaluate through ORT and time it.

    ``size`` other than the training size is refused unless ``force`` (the network was never
    trained at it, and ``RUN/export/`` would be overwritten with a model of another input shape).
    ``stem_weight_bits`` (7 by default) is the stem convolution's weight precision in the INT8
    model: 7 bits keep ONNX Runtime's AVX2 INT8 convolution from saturating on the bright image
    (``export.onnx.quantize_qdq_bytes``). ``float_first_conv`` leaves the stem in float instead,
    which fixed the same loss before its cause was known and costs the ResNet teachers 3-12%
    latency (``experiments/results/bench_int8_stem_*.md``); a phone's NPU would run a float
    convolution elsewhere, so it is off by default.
    """
    from donna_nas.tasks.depth.evaluate import load_gt
    from donna_nas.tasks.depth.run import load_config, load_model

    run = Path(run)
    check_stem_weight_bits(stem_weight_bits)  # before any work
    net, info = load_model(run)
    cfg = load_config(run)
    data = data or cfg.data
    trained = (int(info["height"]), int(info["width"]))
    size = tuple(size or trained)
    if size != trained and not force:
        raise UserError(f"--size {size[0]}x{size[1]}: {run} was trained at {trained[0]}x{trained[1]}; "
                        f"export at the training size (drop --size), or pass --force to export at "
                        f"{size[0]}x{size[1]} anyway (overwrites {run / 'export'})")
    out = run / "export"
    out.mkdir(parents=True, exist_ok=True)
    fp32_path = export_depth_onnx(net, size, out / "model.onnx")

    test_split = str(Path(data) / "splits" / "test_files.txt")
    test_images = _frames(data, test_split, size)
    diff = max_abs_diff_vs_torch(net, fp32_path, test_images[:4])
    result = ExportResult(str(run), size, int(sum(p.numel() for p in net.parameters())), diff)

    gts = load_gt(data) if evaluate else None
    fps = measure_fps(fp32_path, size, threads, repeats=fps_repeats)
    result.fp32 = {"path": str(fp32_path), "fps": fps.fps, "median_ms": fps.median_ms,
                   "std_ms": fps.std_ms, "threads": threads}
    if evaluate:
        result.fp32["metrics"] = _eigen(fp32_path, test_images, gts, info)
    if int8:
        train_split = cfg.train_split or str(Path(data) / "splits" / "train_files.txt")
        calib_images = _frames(data, train_split, size, limit=calib)
        keep = sigmoid_nodes(fp32_path)
        keep += image_conv_nodes(fp32_path) if float_first_conv else []
        int8_path = quantize_qdq(fp32_path, out / "model_int8.onnx", calib_images, keep_float=keep,
                                 stem_weight_bits=stem_weight_bits)
        fps8 = measure_fps(int8_path, size, threads, repeats=fps_repeats)
        result.int8 = {"path": str(int8_path), "fps": fps8.fps, "median_ms": fps8.median_ms,
                       "std_ms": fps8.std_ms, "threads": threads, "calib_frames": int(len(calib_images)),
                       "kept_float": keep, "stem_weight_bits": stem_weight_bits}
        if evaluate:
            result.int8["metrics"] = _eigen(int8_path, test_images, gts, info)
    write_json_atomic(out / "export.json", result.to_json())
    write_text_atomic(out / "export.md", export_markdown(result))
    return result


def export_markdown(r: ExportResult) -> str:
    lines = [f"# Export of `{r.run}`", "",
             f"Input 1x3x{r.size[0]}x{r.size[1]}, {r.params / 1e6:.2f}M params; "
             f"max |ONNX fp32 − PyTorch| disparity = {r.max_abs_diff:.2e}. "
             f"FPS: ONNX Runtime on this CPU, batch 1, {r.fp32.get('threads', 1)} thread(s), median.", "",
             "| model | FPS | ms | " + " | ".join(METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for name, d in (("fp32", r.fp32), ("int8", r.int8)):
        if not d:
            continue
        m = d.get("metrics", {})
        lines.append(f"| {name} | {d['fps']:.1f} | {d['median_ms']:.2f} | "
                     + " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in METRICS) + " |")
    return "\n".join(lines) + "\n"


def load_export(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "export" / "export.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; run `donna-nas export {run}` first")
    return json.loads(path.read_text())


def measure_fps_side_by_side(paths: dict[str, str | Path], size: tuple[int, int], warmup: int = 5,
                             repeats: int = 20, rounds: int = 5) -> dict[str, FpsResult]:
    """Batch-1 FPS of several exported models timed round-robin on one thread with the op
    measurer's interleaving (``OrtMeasurer.time_interleaved``: ``rounds`` rounds of ``repeats``
    runs each, the thread's CPU time).

    The first model is the reference: its latency is its lowest round median, and every other
    model's is that times the median over rounds of its round median / the reference's
    (``latency.ort.paired_ratio``). A burst of load from other processes then slows both sides of
    a round's ratio alike, and a burst on one side is outvoted by the other rounds, so the FPS
    *ratios* hold on a shared machine where separately timed exports can differ by 1.5x."""
    from donna_nas.latency.ort import OrtMeasurer, paired_ratio

    measurer = OrtMeasurer(threads=1, warmup=warmup, repeats=repeats * rounds, rounds=rounds, input_name="image")
    sessions = [ort_session(p, 1) for p in paths.values()]
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    timings = measurer.time_interleaved(sessions, [x] * len(sessions))
    ref = timings[0]
    out = {}
    for name, t in zip(paths, timings):
        ms = ref.median_ms * paired_ratio(t, ref)
        out[name] = FpsResult(1000.0 / ms, ms, t.std_ms, 1)
    return out


def time_exports_side_by_side(runs: dict[str, str | Path], size: tuple[int, int], repeats: int,
                              path: str | Path) -> dict[str, Any]:
    """Each run's fp32 and INT8 exports (``RUN/export/``) timed side by side
    (``measure_fps_side_by_side``), written to ``path`` as ``{"how": ..., "NAME/fp32": {"fps",
    "median_ms"}, "NAME/int8": ...}``: the FPS a comparison table shows, since the exports
    themselves ran minutes apart under whatever load the machine had then."""
    paths = {f"{name}/{prec}": Path(run) / "export" / ("model.onnx" if prec == "fp32" else "model_int8.onnx")
             for name, run in runs.items() for prec in ("fp32", "int8")}
    # thirty rounds, as many as the deployed check's three pairings of ten, so that the table's
    # ratio is measured as precisely as the one the selection was made on
    res = measure_fps_side_by_side(paths, tuple(size), repeats=max(3, repeats), rounds=30)
    rec = {"how": "ONNX Runtime, this CPU, batch 1, 1 thread, round-robin, thread's CPU time: the first "
                  "model's lowest round median, the others' by their median round ratio to it",
           **{k: {"fps": r.fps, "median_ms": r.median_ms} for k, r in res.items()}}
    write_json_atomic(path, rec)
    return rec
