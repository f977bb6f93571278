"""The one interface every latency source implements, in the manner of optuna's ``BaseSampler``.

A model's latency is the sum of its op instances' latencies (every layer of every block at its
input shape, plus the stem and any fixed ops a table declares). Sources differ only in how they
get one op's latency, so a subclass states three things and inherits the rest:

- ``op_latencies(ops, space, input_size)``: the latency (ms) of each op instance;
- ``is_additive``: whether every op of a space has a latency *without measuring anything* (a
  lookup table, a fitted latency model, a synthetic formula). The exact Pareto solver reads every
  block term of the space, so it only runs on additive sources; a live measurer is a per-op sum
  too, but reading every op would mean timing all of them, so it only serves NSGA-II (which
  measures the ops it meets, once each);
- ``missing(keys)``: the op keys among ``keys`` the source cannot answer (empty for sources that
  measure or model on demand). ``check_coverage`` uses it to fail before a search starts.

Sources backed by recorded rows (a lookup table, measurements, a table filled in by the op latency
model) also override ``recorded_latencies(keys)``: which keys they answer from a recorded row
rather than a model or formula. Reports use it to say "measured", "modelled" or "looked up", and
``--speedup`` to price a teacher that a table lists as a whole-model row. ``precision`` names the
recorded rows' precision (``""`` when unknown).

This module is torch-free: the sources here (``MappingLatency``) and the lookup table
(``donna_nas.latency.table``) serve a search without importing torch.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, Iterable, Sequence

from donna_nas.errors import UserError
from donna_nas.space.ops import OpInstance, block_layer_ops, space_keys, stem_op

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.space.space import Architecture, BlockChoice, SearchSpace

__all__ = ["LatencySource", "MappingLatency", "MissingKeysError", "as_latency_source"]


class MissingKeysError(UserError):
    """A search needs op keys the table lacks; the message lists them and how to measure them."""

    def __init__(self, missing: list[str], table: str, command: str, message: str | None = None):
        self.missing = list(missing)
        if message is None:
            shown = ", ".join(self.missing[:3])
            more = f" (+{len(self.missing) - 3} more)" if len(self.missing) > 3 else ""
            message = (f"{table}: {len(self.missing)} op key(s) missing from the latency table: "
                       f"{shown}{more}; measure them with: {command}")
        super().__init__(message)


class LatencySource(abc.ABC):
    """Base class of latency sources (see the module docstring): implement ``op_latencies``,
    ``is_additive`` and ``missing``; override ``fixed_latency`` when every architecture runs
    fixed ops (a classification head) and ``missing_error`` to tell users how to fill gaps."""

    name: str = "latency source"
    precision: str = ""  # of the recorded rows, when the source has any

    @abc.abstractmethod
    def op_latencies(self, ops: Sequence[OpInstance], space: "SearchSpace | None" = None,
                     input_size: tuple[int, int] | None = None) -> list[float]:
        """Latency (ms) of each op instance, in order. ``space``/``input_size`` only name the
        context in error messages."""

    @property
    @abc.abstractmethod
    def is_additive(self) -> bool:
        """True when every op's latency is available without measuring (see the module docstring)."""

    @abc.abstractmethod
    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys (distinct, in first-seen order) this source has no latency for."""

    # ------------------------------------------------------------------ overridable
    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        """Latency of ops every architecture at this input size runs (none by default)."""
        return 0.0

    def missing_error(self, missing: list[str], space: str = "SPACE", size: str = "HxW",
                      needed: int | None = None) -> MissingKeysError:
        """The error naming ``missing`` keys (of ``needed`` a space needs) and how to measure them."""
        cmd = f"donna-nas latency measure --space {space} --size {size}"
        if needed is None:
            return MissingKeysError(missing, self.name, cmd)
        shown = "; ".join(missing[:8]) + (f"; ... ({len(missing) - 8} more)" if len(missing) > 8 else "")
        return MissingKeysError(missing, self.name, cmd, message=(
            f"{self.name}: latency table lacks {len(missing)} of {needed} op keys space "
            f"{space!r} needs: {shown} (measure them with `{cmd}`)"))

    def recorded_latencies(self, keys: Iterable[str]) -> dict[str, float]:
        """Latency (ms) of the keys among ``keys`` this source has a recorded row for (a table
        row or a measurement, not a model or formula), measuring nothing; none by default."""
        return {}

    # ------------------------------------------------------------------ derived
    def op_latency(self, op: OpInstance) -> float:
        return self.op_latencies([op])[0]

    def model_latency(self, ops: Sequence[OpInstance]) -> float:
        return float(sum(self.op_latencies(ops)))

    def arch_latency(self, space: "SearchSpace", arch: "Architecture",
                     input_size: tuple[int, int] | None = None, include_fixed: bool = True) -> float:
        size = tuple(input_size or space.input_size)
        ops = space.ops(arch, size)
        total = float(sum(self.op_latencies(ops, space, size)))
        return total + (self.fixed_latency(size) if include_fixed else 0.0)

    def stem_latency(self, space: "SearchSpace", input_size: tuple[int, int] | None = None) -> float:
        return self.op_latencies([stem_op(space, input_size)], space,
                                 tuple(input_size or space.input_size))[0]

    def block_latency(self, space: "SearchSpace", block_index: int, block_choice: "BlockChoice",
                      cin: int, input_size: tuple[int, int] | None = None) -> float:
        """Latency of block ``block_index``'s layers under ``block_choice`` when it receives
        ``cin`` channels (the previous block's width; the stem's for block 0)."""
        size = tuple(input_size or space.input_size)
        ops = block_layer_ops(space, block_index, block_choice, cin, size)
        return float(sum(self.op_latencies(ops, space, size)))

    def check_coverage(self, space: "SearchSpace", input_size: tuple[int, int] | None = None) -> None:
        """Raise ``missing_error`` (listing every gap) when this source lacks op keys that some
        architecture of ``space`` needs; sources that measure or model on demand pass."""
        size = tuple(input_size or space.input_size)
        keys = space_keys(space, size)
        missing = self.missing(keys)
        if missing:
            raise self.missing_error(missing, space=space.source or space.name,
                                     size=f"{size[0]}x{size[1]}", needed=self._needed(keys))

    def _needed(self, keys: list[str]) -> int | None:
        """How many keys to report as needed in the coverage error (``None``: just list them)."""
        return None


class MappingLatency(LatencySource):
    """An in-memory table: a mapping ``op key -> ms`` (tests, benchmarks, tables built in Python)."""

    is_additive = True

    def __init__(self, table: Mapping[str, float], source: str = "<table>"):
        self.table = table
        self.name = source

    @property
    def source(self) -> str:
        return self.name

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        keys = [op.key for op in ops]
        missing = self.missing(keys)
        if missing:
            raise self.missing_error(missing)
        return [float(self.table[k]) for k in keys]

    def missing(self, keys: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(k for k in keys if k not in self.table))

    def recorded_latencies(self, keys: Iterable[str]) -> dict[str, float]:
        return {k: float(self.table[k]) for k in keys if k in self.table}

    def _needed(self, keys: list[str]) -> int | None:
        return len(keys)


def as_latency_source(obj: LatencySource | Mapping[str, float],
                      source: str = "<latency>") -> LatencySource:
    """A latency source as is, or a mapping ``op key -> ms`` as a ``MappingLatency``."""
    if isinstance(obj, LatencySource):
        return obj
    if isinstance(obj, Mapping):
        return MappingLatency(obj, source=source)
    raise UserError(f"{source}: not a latency source (expected a donna_nas.latency.LatencySource, "
                    f"e.g. a lookup table or an ORT measurer, or a mapping op key -> ms)")
