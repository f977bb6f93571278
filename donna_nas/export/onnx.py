"""Export a depth network to ONNX, quantise it to INT8 (static QDQ) and time it with ONNX Runtime.

The exported graph is the deployable network only: encoder + decoder, one input ``image``
(1x3xHxW in [0, 1]) and one output ``disp`` (the sigmoid disparity at full resolution). Training
helpers (pose network, X-Distill transfer network) are never part of it.
"""

from __future__ import annotations

import io
import logging
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.runtime.io import atomic_path

OPSET = 17


def onnx_bytes(model: nn.Module, input_shape: Sequence[int], input_name: str = "image",
               output_names: Sequence[str] | None = ("disp",)) -> bytes:
    """``model`` (eval mode) as ONNX (opset 17, fixed input shape, constants folded)."""
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.rand(*input_shape),), buf, dynamo=False,
                          opset_version=OPSET, input_names=[input_name],
                          output_names=list(output_names) if output_names else None,
                          do_constant_folding=True)
    return buf.getvalue()


def export_image_model(model: nn.Module, size: tuple[int, int], path: str | Path,
                       output_name: str) -> Path:
    """Write an image model (1x3xHxW input ``image``) as ONNX; atomic."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(onnx_bytes(model, (1, 3, *size), "image", (output_name,)))
    return Path(path)


def export_depth_onnx(model: nn.Module, size: tuple[int, int], path: str | Path) -> Path:
    """Write ``model`` (image → disparity ``disp``) as ONNX with a fixed 1x3xHxW input; atomic."""
    return export_image_model(model, size, path, "disp")


def ort_session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_diff_vs_torch(model: nn.Module, onnx_path: str | Path, images: np.ndarray) -> float:
    """Largest |ONNX − PyTorch| disparity difference over ``images`` (N,3,H,W)."""
    sess = ort_session(onnx_path)
    model = model.eval()
    worst = 0.0
    with torch.no_grad():
        for img in images:
            ref = model(torch.from_numpy(img[None]).float()).numpy()
            out = sess.run(None, {"image": img[None].astype(np.float32)})[0]
            worst = max(worst, float(np.abs(ref - out).max()))
    return worst


def sigmoid_nodes(onnx_path: str | Path) -> list[str]:
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    return [n.name for n in graph.node if n.op_type == "Sigmoid"]


# Ops through which a tensor still carries the input image, pixel for pixel (the normalisation).
_PIXELWISE = frozenset({"Sub", "Div", "Mul", "Add", "Cast", "Identity"})


def image_convs(model) -> list:
    """The Conv nodes that read the graph's input image, directly or through pixelwise normalisation
    (``Sub``/``Div``/...): the stem. ``model`` is an ``onnx.ModelProto``; both the 7-bit stem weights
    and ``--float-first-conv`` find the stem here."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    carries_image, convs = set(inputs), []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if not node.input or node.input[0] not in carries_image:
            continue
        if node.op_type == "Conv" and len(node.input) > 1:
            convs.append(node)
        elif node.op_type in _PIXELWISE:
            carries_image.update(node.output)
    return convs


def image_conv_weights(model) -> list[str]:
    """Weight tensor names of ``image_convs(model)``."""
    return [n.input[1] for n in image_convs(model)]


def image_conv_nodes(onnx_path: str | Path) -> list[str]:
    """Node names of the stem convolutions (``image_convs``) of the ONNX file at ``onnx_path``."""
    import onnx

    return [n.name for n in image_convs(onnx.load(str(onnx_path)))]


def check_stem_weight_bits(bits: int) -> None:
    """Refuse a stem weight width other than 7 or 8 (``quantize_qdq_bytes``), naming the option."""
    if bits not in (7, 8):
        raise UserError(f"--stem-weight-bits {bits}: use 7 (the default: no saturation in ONNX Runtime's "
                        f"AVX2 INT8 convolution) or 8")


def quantize_qdq_bytes(fp32: bytes, calib_inputs: Iterable[np.ndarray], input_name: str = "image",
                       keep_float: Sequence[str] = (), stem_weight_bits: int = 7) -> bytes:
    """Static INT8 QDQ quantisation (U8 activations, per-channel S8 weights) of an ONNX model,
    calibrated on ``calib_inputs`` (each one full input tensor, batch dimension included).
    ``keep_float`` names nodes left in float (e.g. the disparity sigmoid, whose [0, 1] output in
    8 bits would cap depth resolution).

    ``stem_weight_bits=7`` stores the weights of the convolutions that read the image
    (``image_conv_weights``) in 7 bits ([-64, 64]). ONNX Runtime's U8S8 convolution on x86 CPUs
    with AVX2 but no VNNI adds pairs of u8×s8 products in saturating 16-bit lanes (``VPMADDUBSW``):
    255 × 127 twice overflows 32,767. Inside the network that rarely happens, since activations
    crowd near zero, but an image fills the top of its range wherever it is bright, so the stem
    clips. On a 2-core EPYC Zen 3 three searched networks lost 12-17% Sq Rel to INT8 that way, and
    0.2-1.0% with 7-bit stem weights, every layer still INT8 and as fast
    (``experiments/results/bench_int8_stem_*.md``, ``bench_int8_saturation.md``). 7-bit weights
    keep each pair at most 32,640 on every CPU; the cost is one bit on the one layer whose
    3-channel input makes it small. ``stem_weight_bits=8`` quantises them like every other layer."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    check_stem_weight_bits(stem_weight_bits)
    batches = [{input_name: np.asarray(x, dtype=np.float32)} for x in calib_inputs]
    if not batches:
        raise UserError("INT8 calibration needs at least one input (--calib N with N >= 1)")
    overrides = {}
    if stem_weight_bits == 7:
        overrides = {w: [{"reduce_range": True}] for w in image_conv_weights(onnx.load_from_string(fp32))}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.WARNING)  # ORT's "consider pre-processing" advice, per call
            try:
                quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                per_channel=True, nodes_to_exclude=list(keep_float),
                                extra_options={"TensorQuantOverrides": overrides} if overrides else {})
            finally:
                logging.disable(logging.NOTSET)
        return dst.read_bytes()


def quantize_qdq(fp32_path: str | Path, out_path: str | Path, calib_images: Iterable[np.ndarray],
                 input_name: str = "image", keep_float: Sequence[str] = (), stem_weight_bits: int = 7) -> Path:
    """``quantize_qdq_bytes`` of an ONNX file calibrated on (3,H,W) images; writes ``out_path``."""
    data = quantize_qdq_bytes(Path(fp32_path).read_bytes(),
                              [np.asarray(img, dtype=np.float32)[None] for img in calib_images],
                              input_name, keep_float, stem_weight_bits)
    with atomic_path(out_path) as dst:
        dst.write_bytes(data)
    return Path(out_path)


def predict_disparities(onnx_path: str | Path, images: Iterable[np.ndarray]) -> np.ndarray:
    """Run the exported network on (3,H,W) images; returns (N,H,W) sigmoid disparities."""
    sess = ort_session(onnx_path)
    out = [sess.run(None, {"image": np.asarray(img, np.float32)[None]})[0][0, 0] for img in images]
    return np.stack(out)


@dataclass
class FpsResult:
    fps: float
    median_ms: float
    std_ms: float
    threads: int


def measure_fps(onnx_path: str | Path, size: tuple[int, int], threads: int = 1, warmup: int = 5,
                repeats: int = 30) -> FpsResult:
    """Batch-1 frames per second with ONNX Runtime on this CPU (median over ``repeats`` runs)."""
    sess = ort_session(onnx_path, threads)
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    return FpsResult(1000.0 / med, med, statistics.pstdev(times), threads)
