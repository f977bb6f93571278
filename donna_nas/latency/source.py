"""The one interface every latency source offers (tables, live measurement, cached measurement).

A model's latency is the sum of its op instances' latencies (every layer of every block at its
input shape, plus the stem and any fixed ops a table declares). Sources differ only in how they
get one op's latency, so subclasses implement ``op_latencies`` and inherit the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from donna_nas.nn.ops import OpInstance, block_ops

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.latency.ort import OrtMeasurer
    from donna_nas.latency.table import LookupTable
    from donna_nas.space.space import Architecture, BlockChoice, SearchSpace


class LatencySource:
    """Base class: ``op_latencies`` is the only method a source must provide."""

    def op_latencies(self, ops: Sequence[OpInstance], space: "SearchSpace | None" = None,
                     input_size: tuple[int, int] | None = None) -> list[float]:
        raise NotImplementedError

    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        """Latency of ops every architecture at this input size runs (none by default)."""
        return 0.0

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


def stem_op(space: "SearchSpace", input_size: tuple[int, int] | None = None) -> OpInstance:
    h, w = input_size or space.input_size
    st = space.stem
    return OpInstance("stem", space.in_channels, st.channels, st.kernel, st.stride, h, w, st.act)


def block_input_hw(space: "SearchSpace", block_index: int,
                   input_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size entering a block (it depends only on the fixed strides, not on choices)."""
    op = stem_op(space, input_size)
    h, w = op.out_hw
    for b in space.blocks[:block_index]:
        h, w = replace(op, h=h, w=w, stride=b.stride).out_hw
    return h, w


def block_layer_ops(space: "SearchSpace", block_index: int, bc: "BlockChoice", cin: int,
                    input_size: tuple[int, int]) -> list[OpInstance]:
    block = space.blocks[block_index]
    h, w = block_input_hw(space, block_index, input_size)
    ops = []
    for i in range(bc.depth):
        op = OpInstance(bc.op, cin, bc.out_channels, bc.kernel, block.stride if i == 0 else 1,
                        h, w, bc.act, bc.expand, bc.se)
        ops.append(op)
        h, w = op.out_hw
        cin = bc.out_channels
    return ops


def unique_ops(space: "SearchSpace", archs, input_size: tuple[int, int]) -> list[OpInstance]:
    """Distinct op instances (by key) needed by ``archs``, in first-seen order."""
    seen: dict[str, OpInstance] = {}
    for arch in archs:
        for group in block_ops(space, arch, input_size):
            for op in group:
                seen.setdefault(op.key, op)
    return list(seen.values())


def all_ops(space: "SearchSpace", input_size: tuple[int, int]) -> list[OpInstance]:
    """Every distinct op instance any architecture of ``space`` can contain at ``input_size``."""
    seen: dict[str, OpInstance] = {}
    first = stem_op(space, input_size)
    seen[first.key] = first
    cins = {space.stem.channels}
    for i, block in enumerate(space.blocks):
        next_cins = set()
        for bc in block.all_choices():
            for cin in sorted(cins):
                for op in block_layer_ops(space, i, bc, cin, input_size):
                    seen.setdefault(op.key, op)
            next_cins.add(bc.out_channels)
        cins = next_cins
    return list(seen.values())


class CachedMeasurer(LatencySource):
    """Measure ops not yet in a cache table, store them as table rows; the next run is a lookup."""

    def __init__(self, measurer: "OrtMeasurer", cache_path, progress: bool = False):
        from pathlib import Path

        from donna_nas.latency.table import LookupTable

        self.measurer = measurer
        self.cache_path = Path(cache_path)
        self.progress = progress
        self.table = (LookupTable.from_csv(self.cache_path) if self.cache_path.exists()
                      else LookupTable([], self.cache_path))
        if len(self.table) and (self.table.precision != measurer.precision
                                or self.table.device != measurer.device):
            from donna_nas.errors import UserError

            raise UserError(f"{self.cache_path}: cache holds {self.table.device}/"
                            f"{self.table.precision} rows but the measurer is {measurer.device}/"
                            f"{measurer.precision}; use another cache file")

    def op_latencies(self, ops, space=None, input_size=None) -> list[float]:
        todo = {op.key: op for op in ops if op.key not in self.table}
        if todo:
            self.measurer.measure_ops(list(todo.values()), self.table, self.cache_path,
                                      progress=self.progress)
            from donna_nas.latency.table import LookupTable

            self.table = LookupTable.from_csv(self.cache_path)
        return [self.table.rows[op.key].latency_ms for op in ops]

    def fixed_latency(self, input_size: tuple[int, int]) -> float:
        return self.table.fixed_latency(input_size)
