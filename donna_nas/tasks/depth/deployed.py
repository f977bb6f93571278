"""The depth task's deployed latency: the whole depth network (encoder + decoder), timed end to end.

The search prices an encoder as the sum of its op timings; the depth network a user deploys also
runs the decoder (its skip convolutions follow the encoder's widths), and a sum of ops exported
one by one can miss what the runtime fuses. ``DepthDeployedLatency`` times what is shipped: the
candidate's ``DepthNet`` (random weights: latency does not depend on them) exported to ONNX,
quantised to INT8 QDQ when the precision asks for it, batch 1, with the op measurer's settings
(``donna_nas.latency.ort.OrtMeasurer``: batch-norm statistics randomised first, so that no two
folded biases are equal constants that the exporter would share and the quantiser then leave in
float; warm-up, three rounds, the lowest round median, the thread's CPU time with one thread). The
teacher's depth network is timed the same way, and for a speedup bound round-robin with each
candidate (``paired_ms``): ten round pairs, and the median of their ratios
(``donna_nas.latency.ort.paired_ratio``), so that load from other processes slows both sides of a
ratio alike and a burst on one side is outvoted. Timings
are cached in a JSON file keyed by device, precision and size, so a resumed run selects the
same architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from donna_nas.runtime.io import write_json_atomic
from donna_nas.search.select import DeployedLatency

__all__ = ["DepthDeployedLatency", "PAIRED_ROUNDS", "PAIRED_RUNS", "pair_key", "pairings_by_arch"]

PAIRED_ROUNDS = 10
"""Rounds of a candidate-teacher pairing: the ratio is the median of this many round ratios."""
PAIRED_RUNS = 50
"""Timed runs of each side of a pairing, split evenly over the rounds."""


def pair_key(arch: str, trial: int) -> str:
    """The timing cache's key of a candidate's pairing ``trial``: the architecture itself for trial
    0 (so caches written before trials existed still resume), ``ARCH#N`` for trial N."""
    return arch if trial == 0 else f"{arch}#{trial}"


def pairings_by_arch(paired: dict) -> dict[str, list[tuple[float, float]]]:
    """A cache's ``paired_ms`` grouped by architecture: every (candidate, teacher) pairing of each,
    in trial order."""
    out: dict[str, list[tuple[float, float]]] = {}
    for key in sorted(paired, key=lambda k: (k.partition("#")[0], int(k.partition("#")[2] or 0))):
        cand, teacher = paired[key]
        out.setdefault(key.partition("#")[0], []).append((float(cand), float(teacher)))
    return out


class DepthDeployedLatency(DeployedLatency):
    """Deployed latency of depth networks on this CPU with ONNX Runtime.

    ``space``: the search space the candidates' architecture strings belong to; ``teacher``: the
    teacher's backbone (``resnet18`` / ``resnet50``); ``act`` / ``teacher_act``: the decoder
    activation of the candidates (what the final finetune trains) and of the teacher (a shipped
    Monodepth2 decoder uses ELU, which runs in float between quantised convolutions, so it is
    part of the teacher's latency); ``cache``: the JSON file of timings."""

    def __init__(self, space, teacher: str, input_size: tuple[int, int], precision: str = "int8",
                 cache: str | Path | None = None, act: str = "relu", teacher_act: str = "elu",
                 repeats: int = 30, threads: int = 1):
        from donna_nas.latency.ort import OrtMeasurer

        self.space, self.teacher = space, teacher.lower()
        self.size = (int(input_size[0]), int(input_size[1]))
        self.precision, self.act, self.teacher_act = precision, act, teacher_act
        self.measurer = OrtMeasurer(precision=precision, threads=threads, repeats=repeats)
        self.cache = Path(cache) if cache else None
        self._times: dict[str, float] = {}
        self._pairs: dict[str, tuple[float, float]] = {}
        self._sessions: dict = {}  # name -> ORT session: export and int8 calibration once per network
        if self.cache is not None and self.cache.is_file():
            try:
                rec = json.loads(self.cache.read_text())
            except ValueError:
                rec = {}
            if isinstance(rec, dict) and rec.get("key") == self._key():
                self._times = {str(k): float(v) for k, v in rec.get("latency_ms", {}).items()}
                self._pairs = {str(k): (float(v[0]), float(v[1])) for k, v in rec.get("paired_ms", {}).items()}

    def _key(self) -> dict:
        return {"device": self.measurer.device, "runtime": self.measurer.runtime, "precision": self.precision,
                "pairing": f"median round ratio of {PAIRED_ROUNDS} rounds x {PAIRED_RUNS // PAIRED_ROUNDS} runs",
                "input_size": list(self.size), "act": self.act, "teacher_act": self.teacher_act, "space": self.space.fingerprint()}

    def _net(self, name: str):
        from donna_nas.nn.encoders import create_encoder
        from donna_nas.tasks.depth.networks import DepthDecoder, DepthNet

        torch.manual_seed(0)
        if name == self.teacher:
            enc, act = create_encoder(name), self.teacher_act
        else:
            enc, act = self.space.build(self.space.decode(name)), self.act
        return DepthNet(enc, DepthDecoder(enc.channels, act=act)).eval()

    def _save(self) -> None:
        if self.cache is not None:
            write_json_atomic(self.cache, {"key": self._key(), "what": self.describe(), "latency_ms": self._times,
                                           "paired_ms": {k: list(v) for k, v in self._pairs.items()}})

    def _session(self, name: str):
        if name not in self._sessions:
            prepared = self.measurer.prepare(self._net(name), (1, 3, *self.size), image=True)
            self._sessions[name] = self.measurer.session(prepared)
        return self._sessions[name]

    def _time(self, name: str) -> float:
        if name not in self._times:
            from donna_nas.latency.ort import sample_input

            timing = self.measurer.time_session(self._session(name), sample_input((1, 3, *self.size), True, 0))
            self._times[name] = float(timing.median_ms)
            self._save()
        return self._times[name]

    def paired_ms(self, arch: str, trial: int = 0) -> tuple[float, float]:
        """The candidate and the teacher timed round-robin (``OrtMeasurer.time_interleaved``);
        each ``trial`` is timed once and cached (trial 0 under the architecture's own key, so caches
        written before trials existed still resume)."""
        key = pair_key(arch, trial)
        if key not in self._pairs:
            from donna_nas.latency.ort import paired_ratio, sample_input

            x = sample_input((1, 3, *self.size), True, 0)
            cand, teacher = self.measurer.time_interleaved([self._session(arch), self._session(self.teacher)], [x, x],
                                                           repeats=PAIRED_RUNS, rounds=PAIRED_ROUNDS)
            # the candidate at the teacher's quiet latency: the teacher's lowest round median times
            # the median per-round ratio (a bisection step that misjudges one candidate discards
            # half the front, so one loaded round must not decide it)
            self._pairs[key] = (float(teacher.median_ms * paired_ratio(cand, teacher)), float(teacher.median_ms))
            self._save()
        return self._pairs[key]

    def teacher_ms(self) -> float:
        return self._time(self.teacher)

    def candidate_ms(self, arch: str) -> float:
        return self._time(arch)

    def describe(self) -> str:
        h, w = self.size
        return (f"measured end to end: the whole depth network (encoder + decoder) at {h}x{w}, ONNX Runtime "
                f"{self.precision} on this CPU, batch 1, {self.measurer.threads} thread")
