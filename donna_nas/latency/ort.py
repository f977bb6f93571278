"""Measuring op instances and whole models with ONNX Runtime on this machine's CPU.

Each op instance is exported alone to ONNX (``make_layer``), optionally quantised to INT8 with
static QDQ quantisation calibrated on sample inputs, and timed in a session with a fixed thread
count: warm-up runs, then N timed runs in a few rounds; the row stores the lowest round median
and the std of all runs.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from donna_nas.errors import UserError
from donna_nas.export.onnx import onnx_bytes, quantize_qdq_bytes
from donna_nas.latency.base import LatencySource
from donna_nas.latency.table import LookupTable, TableRow
from donna_nas.nn.ops import make_layer
from donna_nas.space.ops import OpInstance

INT8_REL_TOLERANCE = 0.15
"""Documented INT8 accuracy bound: relative L2 error ||y_int8 - y_fp32|| / ||y_fp32|| of one
op instance with random weights, calibrated on inputs of the same distribution as the test input."""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def op_input_shape(op: OpInstance) -> tuple[int, int, int, int]:
    return (1, op.cin, op.h, op.w)


def sample_input(shape: Sequence[int], image: bool, seed: int) -> np.ndarray:
    """Images lie in [0, 1]; feature maps are BN-normalised, roughly standard normal."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g) if image else torch.randn(*shape, generator=g)
    return x.numpy()


def export_onnx(module: nn.Module, shape: Sequence[int], path: str | Path | None = None) -> bytes:
    """The module exported to ONNX (opset 17, fixed shape, input ``x``); also written to ``path``."""
    data = onnx_bytes(module, shape, input_name="x", output_names=None)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so exported graphs behave like trained ones."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return module


def quantize_int8(fp32: bytes, shape: Sequence[int], image: bool, calib_samples: int = 8) -> bytes:
    """Static QDQ INT8 quantisation (U8 activations, per-channel S8 weights) of an ONNX model,
    calibrated with ``calib_samples`` sample inputs."""
    return quantize_qdq_bytes(fp32, [sample_input(shape, image, 1000 + i) for i in range(calib_samples)],
                              input_name="x")


@dataclass
class Timing:
    """One session's timing: ``median_ms`` is the lowest round median, ``std_ms`` the spread of
    every timed run, ``round_medians`` the median of each round in the order they ran."""

    median_ms: float
    std_ms: float
    runs: int
    round_medians: tuple[float, ...] = ()


def paired_ratio(a: Timing, b: Timing) -> float:
    """Latency of ``a`` over ``b`` from two sessions timed round-robin (``time_interleaved``):
    the median over rounds of a's round median / b's round median.

    A round pair runs back to back, so load from other processes that slows one round slows both
    sides of its ratio; the median then outvotes the rounds a burst hit on one side only. The
    ratio of the two lowest round medians would not: when the quiet rounds of ``a`` and ``b``
    differ, it compares a quiet ``b`` with a loaded ``a``."""
    if not a.round_medians or len(a.round_medians) != len(b.round_medians):
        raise ValueError("paired_ratio needs two timings of the same time_interleaved call")
    return statistics.median(x / y for x, y in zip(a.round_medians, b.round_medians))


class OrtMeasurer(LatencySource):
    """Measure op latencies live with ONNX Runtime (CPU). Use ``CachedMeasurer`` to keep results.

    Not additive in the exact solver's sense (every op would be timed); NSGA-II uses it."""

    is_additive = False

    def __init__(self, precision: str = "fp32", threads: int = 1, warmup: int = 5,
                 repeats: int = 20, device: str | None = None, calib_samples: int = 8,
                 rounds: int = 3, clock: str = "auto", input_name: str = "x"):
        if precision not in ("fp32", "int8"):
            raise UserError(f"--precision must be fp32 or int8, got {precision!r}")
        if threads < 1 or repeats < 1 or warmup < 0 or rounds < 1:
            raise UserError("threads, repeats and rounds must be >= 1 and warmup >= 0")
        import onnxruntime

        self.precision = precision
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.calib_samples = calib_samples
        self.rounds = rounds
        self.input_name = input_name  # the timed sessions' input ("x" for ops, "image" for exports)
        if clock == "auto":
            clock = "cpu" if threads == 1 else "wall"
        if clock not in ("cpu", "wall") or (clock == "cpu" and threads != 1):
            raise UserError(f"clock must be 'wall', or 'cpu' with 1 thread; got {clock!r} with "
                            f"{threads} threads")
        self.clock = clock
        self.device = device or cpu_name()
        self.runtime = f"onnxruntime-{onnxruntime.__version__}-cpu-{threads}t"

    # ------------------------------------------------------------------ sessions
    def session(self, model: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def time_session(self, sess, x: np.ndarray, repeats: int | None = None) -> Timing:
        """Warm up, then ``rounds`` rounds of timed runs; the latency is the lowest round median
        (a round overlapping a burst of load from other processes is discarded that way) and the
        std is over all timed runs."""
        rounds = [[] for _ in range(self.rounds)]
        self._warm(sess, x)
        for r in range(self.rounds):
            rounds[r] = self._timed(sess, x, self._per_round(repeats))
        return self._combine(rounds)

    def _per_round(self, repeats: int | None, rounds: int | None = None) -> int:
        return max(1, -(-(repeats or self.repeats) // (rounds or self.rounds)))

    def _warm(self, sess, x: np.ndarray) -> None:
        for _ in range(self.warmup):
            sess.run(None, {self.input_name: x})

    def _timed(self, sess, x: np.ndarray, n: int) -> list[float]:
        # With one intra-op thread ORT computes on the calling thread, so that thread's CPU
        # time is the run's latency without the time other processes held the core: on a
        # shared machine it is far steadier than the wall clock and equals it when idle.
        clock = time.thread_time if self.clock == "cpu" else time.perf_counter
        feed = {self.input_name: x}
        times = []
        for _ in range(n):
            t0 = clock()
            sess.run(None, feed)
            times.append((clock() - t0) * 1e3)
        return times

    @staticmethod
    def _combine(rounds: list[list[float]]) -> Timing:
        flat = [t for r in rounds for t in r]
        std = statistics.pstdev(flat) if len(flat) > 1 else 0.0
        medians = tuple(statistics.median(r) for r in rounds)
        return Timing(min(medians), std, len(flat), medians)

    def time_interleaved(self, sessions: list, inputs: list[np.ndarray],
                         repeats: int | None = None, rounds: int | None = None) -> list[Timing]:
        """Time several sessions round-robin: each one's rounds are spread over the whole batch's
        duration, so a load burst rarely hits all rounds of one op. ``rounds`` overrides the
        measurer's (``repeats`` is the total per session, split over the rounds)."""
        n_rounds = rounds or self.rounds
        n = self._per_round(repeats, n_rounds)
        for sess, x in zip(sessions, inputs):
            self._warm(sess, x)
        rounds_ms: list[list[list[float]]] = [[] for _ in sessions]
        for _ in range(n_rounds):
            for i, (sess, x) in enumerate(zip(sessions, inputs)):
                sess.run(None, {self.input_name: x})  # re-warm caches after the other sessions ran
                rounds_ms[i].append(self._timed(sess, x, n))
        return [self._combine(r) for r in rounds_ms]

    def prepare(self, module: nn.Module, shape: Sequence[int], image: bool) -> bytes:
        """The ONNX bytes that get timed: fp32 export, or its INT8 QDQ quantisation."""
        fp32 = export_onnx(randomize_bn(module), shape)
        if self.precision == "int8":
            return quantize_int8(fp32, shape, image, self.calib_samples)
        return fp32

    def measure_module(self, module: nn.Module, shape: Sequence[int], image: bool = False,
                       repeats: int | None = None) -> Timing:
        sess = self.session(self.prepare(module, shape, image))
        return self.time_session(sess, sample_input(shape, image, 0), repeats)

    def op_session(self, op: OpInstance):
        torch.manual_seed(0)
        shape = op_input_shape(op)
        sess = self.session(self.prepare(make_layer(op), shape, op.kind == "stem"))
        return sess, sample_input(shape, op.kind == "stem", 0)

    def measure_op(self, op: OpInstance) -> Timing:
        sess, x = self.op_session(op)
        return self.time_session(sess, x)

    def row(self, op: OpInstance, t: Timing) -> TableRow:
        return TableRow(op.key, t.median_ms, t.std_ms, self.device, self.precision, self.runtime,
                        f"measured {time.strftime('%Y-%m-%d')} warmup={self.warmup} "
                        f"repeats={t.runs} rounds={self.rounds} clock={self.clock} (lowest round median)")

    # ------------------------------------------------------------------ LatencySource
    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        cache: dict[str, float] = {}
        for op in ops:
            if op.key not in cache:
                cache[op.key] = self.measure_op(op).median_ms
        return [cache[op.key] for op in ops]

    def missing(self, keys) -> list[str]:
        return []  # measured on demand

    @property
    def name(self) -> str:
        return f"onnxruntime {self.precision} ({self.device})"

    def measure_ops(self, ops: Sequence[OpInstance], table: LookupTable | None, out: str | Path,
                    progress: bool = True, time_budget_s: float | None = None,
                    save_every_s: float = 20.0, batch: int = 8,
                    on_row: Callable[[TableRow], None] | None = None) -> LookupTable:
        """Measure ``ops`` missing from ``table`` and write the table to ``out`` (atomically, every
        ``save_every_s`` seconds too, so an interrupted run resumes where it stopped). Ops are
        timed ``batch`` at a time, round-robin (``time_interleaved``)."""
        table = table if table is not None else LookupTable([], out)
        if len(table) and (table.precision != self.precision or table.device != self.device):
            raise UserError(f"{out}: holds {table.device}/{table.precision} rows; this measurement "
                            f"is {self.device}/{self.precision}: write to another --out file")
        todo = [op for op in dict((o.key, o) for o in ops).values() if op.key not in table]
        new: list[TableRow] = []
        start = last_save = time.monotonic()

        def save() -> None:
            nonlocal table, new
            table = table.merged(new)
            new = []
            table.to_csv(out)

        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        with Progress(TextColumn("measuring ops"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), disable=not progress) as bar:
            task = bar.add_task("ops", total=len(todo))
            for i in range(0, len(todo), batch):
                if i and time_budget_s is not None and time.monotonic() - start > time_budget_s:
                    break
                chunk = todo[i:i + batch]
                prepared = [self.op_session(op) for op in chunk]
                timings = self.time_interleaved([p[0] for p in prepared], [p[1] for p in prepared])
                for op, t in zip(chunk, timings):
                    r = self.row(op, t)
                    new.append(r)
                    if on_row:
                        on_row(r)
                bar.advance(task, len(chunk))
                if time.monotonic() - last_save > save_every_s:
                    save()
                    last_save = time.monotonic()
        save()
        return table
