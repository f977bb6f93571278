"""``SyntheticLatency``: an additive stand-in for a device table, from MACs (tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from donna_nas.latency.base import LatencySource
from donna_nas.space.ops import OpInstance

__all__ = ["SyntheticLatency"]


@dataclass
class SyntheticLatency(LatencySource):
    """Latency from MACs with per-op factors: ms = Σ_ops (macs · factor_kind / macs_per_ms +
    overhead), +0.02 ms for SE, ×1.05 for swish. Every op has a value: additive, nothing missing."""

    macs_per_ms: float = 2e7
    overhead_ms: float = 0.05
    factors: dict[str, float] = field(default_factory=lambda: {
        "stem": 1.0, "ir": 1.6, "fused_ir": 0.8, "gconv": 1.2})

    is_additive = True
    name = "<synthetic>"

    def op_ms(self, op: OpInstance) -> float:
        ms = op.macs / self.macs_per_ms * self.factors.get(op.kind, 1.0) + self.overhead_ms
        if op.se:
            ms += 0.02
        if op.act == "swish":
            ms *= 1.05
        return ms

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        return [self.op_ms(o) for o in ops]

    def missing(self, keys: Iterable[str]) -> list[str]:
        return []
