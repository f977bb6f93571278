"""Op instances and the op arithmetic of a space: torch-free data (no network is ever built here).

Search needs params, MACs and latency of millions of architectures, so they are computed from
``OpInstance`` records (pure arithmetic). An op instance is one layer of one block at one input
shape; ``OpInstance.key`` names its latency-table row.

Every op type is described once, as data (``OP_TYPES``): the convolutions it is made of
(``ConvSpec``: input and output width, kernel, stride, groups, activation) and where its
squeeze-excite sits. ``OpInstance.convs`` resolves that description to concrete ``Conv``s, and
everything else is derived from them: params and MACs here, the PyTorch module
(``donna_nas.nn.ops.make_layer``), the weight slices of an elastic block
(``donna_nas.distill.elastic``) and the work counts of the op latency model
(``donna_nas.latency.model.op_features``). Adding an op type is one entry in ``OP_TYPES``.

Counting conventions: params are trainable parameters (BatchNorm has 2 per channel; its running
statistics are buffers). MACs are the multiply-accumulates of convolutions and linear layers at
inference (BatchNorm folds into the convolution; activations, pooling and additions are not
counted).

The rest of the module lists op instances: those of the stem, of one block given its incoming
width, of an architecture, of a sample of architectures and of a whole space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.space.space import Architecture, BlockChoice, SearchSpace

__all__ = ["GROUP_WIDTH", "OP_TYPES", "Conv", "ConvSpec", "OpInstance", "OpType", "all_ops",
           "arch_ops", "block_input_hw", "block_layer_ops", "block_ops", "conv_out",
           "incoming_widths", "layer_mid", "layer_ops", "make_divisible", "stem_op", "unique_ops"]

GROUP_WIDTH = 16
"""Channels per group of the ``gconv`` op's grouped convolution."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (never below 90% of ``value``), as MobileNets do."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_out(size: int, stride: int) -> int:
    """Output length of a 'same'-padded convolution (padding k//2, odd k)."""
    return (size - 1) // stride + 1


# ---------------------------------------------------------------------- op type descriptions
@dataclass(frozen=True)
class ConvSpec:
    """One convolution (+ BatchNorm) of an op type, in symbolic widths.

    ``cin``/``cout``: ``"in"`` (the op's input width), ``"mid"`` (its hidden width) or ``"out"``;
    ``kernel``: ``"k"`` (the op's kernel, with the op's stride) or ``1`` (a pointwise conv, stride
    1); ``groups``: ``1`` (dense), ``"depthwise"`` (one channel a group) or ``"grouped"``
    (``GROUP_WIDTH`` channels a group); ``act``: whether the op's activation follows.
    ``name`` names the shared tensor of an elastic layer (``{name}_w``, ``{name}_bn``)."""

    name: str
    cin: str
    cout: str
    kernel: str | int
    groups: str | int = 1
    act: bool = True


@dataclass(frozen=True)
class OpType:
    """An op type: its convolutions in execution order, squeeze-excite (when chosen) before the
    last one. ``mid_divisor``: the hidden width is ``make_divisible(cin * expand, mid_divisor)``;
    ``skip_first_at_e1``: with expansion 1 the first conv is dropped and the hidden width is the
    input width (``ir`` becomes a depthwise-separable layer)."""

    name: str
    convs: tuple[ConvSpec, ...]
    mid_divisor: int = 8
    skip_first_at_e1: bool = False
    doc: str = ""


_PROJECT = ConvSpec("project", "mid", "out", 1, act=False)

OP_TYPES: dict[str, OpType] = {
    "ir": OpType("ir", (ConvSpec("expand", "in", "mid", 1),
                        ConvSpec("dw", "mid", "mid", "k", "depthwise"),
                        _PROJECT),
                 skip_first_at_e1=True,
                 doc="inverted residual (MBConv): 1x1 expand, kxk depthwise, 1x1 project"),
    "fused_ir": OpType("fused_ir", (ConvSpec("expand", "in", "mid", "k"), _PROJECT),
                       doc="fused inverted residual: kxk full conv expand, 1x1 project"),
    "gconv": OpType("gconv", (ConvSpec("expand", "in", "mid", 1),
                              ConvSpec("dw", "mid", "mid", "k", "grouped"),
                              _PROJECT),
                    mid_divisor=GROUP_WIDTH,
                    doc="grouped-conv bottleneck: 1x1 expand, kxk grouped conv (16 channels a "
                        "group), 1x1 project"),
}
STEM = OpType("stem", (ConvSpec("stem", "in", "out", "k"),), doc="the fixed first conv-BN-act")


def op_type(kind: str) -> OpType:
    if kind == "stem":
        return STEM
    try:
        return OP_TYPES[kind]
    except KeyError:
        raise ValueError(f"unknown op {kind!r}") from None


def layer_mid(kind: str, cin: int, expand: float) -> int:
    """Hidden width of a layer of op type ``kind`` with ``cin`` inputs at expansion ``expand``."""
    t = op_type(kind)
    if kind == "stem" or (t.skip_first_at_e1 and expand == 1):
        return cin
    return make_divisible(cin * expand, t.mid_divisor)


def groups_of(spec: ConvSpec, cin: int) -> int:
    """The ``groups`` of ``spec`` for a conv with ``cin`` input channels."""
    if spec.groups == "depthwise":
        return cin
    if spec.groups == "grouped":
        return cin // GROUP_WIDTH
    return int(spec.groups)


def in_per_group(spec: ConvSpec, cin: int) -> int:
    """Input channels each output channel of ``spec`` sees (the weight's second dimension)."""
    if spec.groups == "depthwise":
        return 1
    if spec.groups == "grouped":
        return GROUP_WIDTH
    return cin // int(spec.groups)


@dataclass(frozen=True)
class Conv:
    """One concrete convolution (+ BatchNorm) of an op instance, at its input size ``h``×``w``."""

    name: str
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int
    act: bool
    h: int
    w: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_out(self.h, self.stride), conv_out(self.w, self.stride)

    @property
    def depthwise(self) -> bool:
        """Grouped or depthwise (the latency model's ``spatial_macs``), not a dense conv."""
        return self.groups > 1

    @property
    def params(self) -> int:
        return self.cin // self.groups * self.cout * self.kernel ** 2 + 2 * self.cout

    @property
    def macs(self) -> int:
        ho, wo = self.out_hw
        return self.cin // self.groups * self.cout * self.kernel ** 2 * ho * wo


# ---------------------------------------------------------------------- op instances
@dataclass(frozen=True)
class OpInstance:
    """One layer at one input shape. ``kind`` is ``stem`` or an op type of ``OP_TYPES``."""

    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    h: int
    w: int
    act: str
    expand: float = 1
    se: bool = False

    # ------------------------------------------------------------------ identity
    @property
    def key(self) -> str:
        """Canonical latency-table key, e.g. ``ir:cin=40,cout=80,k=5,e=4,s=2,se=1,act=relu,h=24,w=80``."""
        if self.kind == "stem":
            return (f"stem:cin={self.cin},cout={self.cout},k={self.kernel},s={self.stride},"
                    f"act={self.act},h={self.h},w={self.w}")
        e = int(self.expand) if float(self.expand).is_integer() else self.expand
        return (f"{self.kind}:cin={self.cin},cout={self.cout},k={self.kernel},e={e},"
                f"s={self.stride},se={int(self.se)},act={self.act},h={self.h},w={self.w}")

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_out(self.h, self.stride), conv_out(self.w, self.stride)

    @property
    def mid(self) -> int:
        """Expanded width ``make_divisible(cin * expand)`` (what the expansion would produce)."""
        return make_divisible(self.cin * self.expand, op_type(self.kind).mid_divisor)

    @property
    def hidden(self) -> int:
        """The width between the op's first and last conv (``cin`` where the expansion is skipped)."""
        return self.mid if self.has_expand_conv else self.cin

    @property
    def has_expand_conv(self) -> bool:
        """``ir`` with expansion 1 skips the 1x1 expansion (a depthwise-separable layer)."""
        return not (op_type(self.kind).skip_first_at_e1 and self.expand == 1)

    @property
    def residual(self) -> bool:
        return self.kind != "stem" and self.stride == 1 and self.cin == self.cout

    @property
    def se_channels(self) -> int:
        return make_divisible(self.mid / 4, 8)

    # ------------------------------------------------------------------ structure
    def conv_specs(self) -> tuple[ConvSpec, ...]:
        """The op type's conv descriptions that this instance runs (the first is dropped for
        ``ir`` at expansion 1)."""
        specs = op_type(self.kind).convs
        return specs if self.has_expand_conv else specs[1:]

    @property
    def convs(self) -> list[Conv]:
        """The concrete convolutions, in execution order, each at its own input size."""
        width = {"in": self.cin, "mid": self.hidden, "out": self.cout}
        h, w = self.h, self.w
        out = []
        for spec in self.conv_specs():
            cin, cout = width[spec.cin], width[spec.cout]
            spatial = spec.kernel == "k"
            c = Conv(spec.name, cin, cout, self.kernel if spatial else int(spec.kernel),
                     self.stride if spatial else 1, groups_of(spec, cin), spec.act, h, w)
            out.append(c)
            h, w = c.out_hw
        return out

    # ------------------------------------------------------------------ cost
    @property
    def params(self) -> int:
        p = sum(c.params for c in self.convs)
        if self.se:
            mid, sq = self.hidden, self.se_channels
            p += mid * sq + sq + sq * mid + mid
        return p

    @property
    def macs(self) -> int:
        m = sum(c.macs for c in self.convs)
        if self.se:
            m += 2 * self.hidden * self.se_channels
        return m


# ---------------------------------------------------------------------- op lists
def incoming_widths(space: "SearchSpace", index: int) -> tuple[int, ...]:
    """Possible input widths of block ``index``: the previous block's widths (the stem's for b1)."""
    if index == 0:
        return (space.stem.channels,)
    return tuple(space.blocks[index - 1].out_channels)


def stem_op(space: "SearchSpace", input_size: tuple[int, int] | None = None) -> OpInstance:
    h, w = input_size or space.input_size
    st = space.stem
    return OpInstance("stem", space.in_channels, st.channels, st.kernel, st.stride, h, w, st.act)


def block_input_hw(space: "SearchSpace", block_index: int,
                   input_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Spatial size entering a block (it depends only on the fixed strides, not on choices)."""
    h, w = stem_op(space, input_size).out_hw
    for b in space.blocks[:block_index]:
        h, w = conv_out(h, b.stride), conv_out(w, b.stride)
    return h, w


def layer_ops(bc: "BlockChoice", cin: int, stride: int, h: int, w: int) -> list[OpInstance]:
    """The layers of one block under choice ``bc``: ``cin`` channels at ``h``×``w`` come in, the
    first layer has the block's ``stride``."""
    ops = []
    for i in range(bc.depth):
        op = OpInstance(bc.op, cin, bc.out_channels, bc.kernel, stride if i == 0 else 1, h, w,
                        bc.act, bc.expand, bc.se)
        ops.append(op)
        h, w = op.out_hw
        cin = bc.out_channels
    return ops


def block_layer_ops(space: "SearchSpace", block_index: int, bc: "BlockChoice", cin: int,
                    input_size: tuple[int, int] | None = None) -> list[OpInstance]:
    """The layers of block ``block_index`` under ``bc`` when it receives ``cin`` channels."""
    h, w = block_input_hw(space, block_index, input_size)
    return layer_ops(bc, cin, space.blocks[block_index].stride, h, w)


def block_ops(space: "SearchSpace", arch: "Architecture", input_size: tuple[int, int] | None = None
              ) -> list[list[OpInstance]]:
    """Op instances grouped by part: element 0 is the stem, then one list per block."""
    stem = stem_op(space, input_size)
    groups = [[stem]]
    h, w = stem.out_hw
    cin = space.stem.channels
    for block, bc in zip(space.blocks, arch.block_choices):
        layers = layer_ops(bc, cin, block.stride, h, w)
        groups.append(layers)
        h, w = layers[-1].out_hw
        cin = bc.out_channels
    return groups


def arch_ops(space: "SearchSpace", arch: "Architecture", input_size: tuple[int, int] | None = None
             ) -> list[OpInstance]:
    """All op instances of ``arch`` in execution order (stem first)."""
    return [op for group in block_ops(space, arch, input_size) for op in group]


def unique_ops(space: "SearchSpace", archs: Iterable["Architecture"],
               input_size: tuple[int, int] | None = None) -> list[OpInstance]:
    """Distinct op instances (by key) needed by ``archs``, in first-seen order."""
    seen: dict[str, OpInstance] = {}
    for arch in archs:
        for op in arch_ops(space, arch, input_size):
            seen.setdefault(op.key, op)
    return list(seen.values())


def all_ops(space: "SearchSpace", input_size: tuple[int, int] | None = None) -> list[OpInstance]:
    """Every distinct op instance any architecture of ``space`` can contain at ``input_size``."""
    first = stem_op(space, input_size)
    seen: dict[str, OpInstance] = {first.key: first}
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


def space_keys(space: "SearchSpace", input_size: tuple[int, int] | None = None) -> list[str]:
    """Sorted op keys every architecture of ``space`` may need (what a table must cover)."""
    return sorted(op.key for op in all_ops(space, input_size))
