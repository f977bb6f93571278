"""``CachedMeasurer``: measure each op once, keep it as a table row; the next run is a lookup."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from donna_nas.errors import UserError
from donna_nas.latency.base import LatencySource
from donna_nas.latency.table import LookupTable

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.latency.ort import OrtMeasurer

__all__ = ["CachedMeasurer"]


class CachedMeasurer(LatencySource):
    """Measure ops not yet in a cache table, store them as table rows; the next run is a lookup.

    Not additive in the exact solver's sense: ops outside the cache are timed when first asked."""

    is_additive = False

    def __init__(self, measurer: "OrtMeasurer", cache_path, progress: bool = False):
        self.measurer = measurer
        self.cache_path = Path(cache_path)
        self.name = str(self.cache_path)
        self.progress = progress
        self.table = (LookupTable.from_csv(self.cache_path) if self.cache_path.exists()
                      else LookupTable([], self.cache_path))
        if len(self.table) and (self.table.precision != measurer.precision
                                or self.table.device != measurer.device):
            raise UserError(f"{self.cache_path}: cache holds {self.table.device}/"
                            f"{self.table.precision} rows but the measurer is {measurer.device}/"
                            f"{measurer.precision}; use another cache file")

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        todo = {op.key: op for op in ops if op.key not in self.table}
        if todo:
            self.measurer.measure_ops(list(todo.values()), self.table, self.cache_path,
                                      progress=self.progress)
            self.table = LookupTable.from_csv(self.cache_path)
        return [self.table.rows[op.key].latency_ms for op in ops]

    def missing(self, keys: Iterable[str]) -> list[str]:
        return []  # measured on demand

    def recorded_latencies(self, keys: Iterable[str]) -> dict[str, float]:
        return self.table.recorded_latencies(keys)  # measured so far

    @property
    def precision(self) -> str:
        return self.measurer.precision

    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        return self.table.fixed_latency(input_size)
