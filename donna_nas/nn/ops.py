"""Op instances: one layer with its shapes, its analytic cost, its latency key and its module.

Search needs params, MACs and latency of millions of architectures, so they are computed from
``OpInstance`` records (pure arithmetic), never by building networks. The same record builds the
PyTorch module (``make_layer``), which is what the tests hold the arithmetic against, and names
the latency-table row (``OpInstance.key``).

Counting conventions: params are trainable parameters (BatchNorm has 2 per channel; its running
statistics are buffers). MACs are the multiply-accumulates of convolutions and linear layers at
inference (BatchNorm folds into the convolution; activations, pooling and additions are not
counted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from donna_nas.space.space import Architecture, SearchSpace

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


@dataclass(frozen=True)
class OpInstance:
    """One layer at one input shape. ``kind`` is ``stem`` or an op type of the space."""

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
        """Hidden (expanded) width."""
        if self.kind == "gconv":
            return make_divisible(self.cin * self.expand, GROUP_WIDTH)
        return make_divisible(self.cin * self.expand, 8)

    @property
    def has_expand_conv(self) -> bool:
        """``ir`` with expansion 1 skips the 1x1 expansion (a depthwise-separable layer)."""
        return not (self.kind == "ir" and self.expand == 1)

    @property
    def residual(self) -> bool:
        return self.kind != "stem" and self.stride == 1 and self.cin == self.cout

    @property
    def se_channels(self) -> int:
        return make_divisible(self.mid / 4, 8)

    # ------------------------------------------------------------------ cost
    @property
    def params(self) -> int:
        k2, cin, cout = self.kernel ** 2, self.cin, self.cout
        if self.kind == "stem":
            return cin * cout * k2 + 2 * cout
        mid = self.mid if self.has_expand_conv else cin
        p = 0
        if self.kind == "ir":
            if self.has_expand_conv:
                p += cin * mid + 2 * mid
            p += mid * k2 + 2 * mid
        elif self.kind == "fused_ir":
            p += cin * mid * k2 + 2 * mid
        elif self.kind == "gconv":
            p += cin * mid + 2 * mid
            p += mid * GROUP_WIDTH * k2 + 2 * mid
        else:  # pragma: no cover - validated by the space
            raise ValueError(self.kind)
        if self.se:
            sq = self.se_channels
            p += mid * sq + sq + sq * mid + mid
        p += mid * cout + 2 * cout
        return p

    @property
    def macs(self) -> int:
        k2, cin, cout = self.kernel ** 2, self.cin, self.cout
        ho, wo = self.out_hw
        hw_in, hw_out = self.h * self.w, ho * wo
        if self.kind == "stem":
            return cin * cout * k2 * hw_out
        mid = self.mid if self.has_expand_conv else cin
        m = 0
        if self.kind == "ir":
            if self.has_expand_conv:
                m += cin * mid * hw_in
            m += mid * k2 * hw_out
        elif self.kind == "fused_ir":
            m += cin * mid * k2 * hw_out
        elif self.kind == "gconv":
            m += cin * mid * hw_in
            m += mid * GROUP_WIDTH * k2 * hw_out
        if self.se:
            m += 2 * mid * self.se_channels
        m += mid * cout * hw_out
        return m


def block_ops(space: "SearchSpace", arch: "Architecture", input_size: tuple[int, int]
              ) -> list[list[OpInstance]]:
    """Op instances grouped by part: element 0 is the stem, then one list per block."""
    h, w = input_size
    st = space.stem
    stem = OpInstance("stem", space.in_channels, st.channels, st.kernel, st.stride, h, w, st.act)
    groups = [[stem]]
    h, w = stem.out_hw
    cin = st.channels
    for block, bc in zip(space.blocks, arch.choices):
        layers = []
        for i in range(bc.depth):
            stride = block.stride if i == 0 else 1
            op = OpInstance(bc.op, cin, bc.out_channels, bc.kernel, stride, h, w, bc.act,
                            bc.expand, bc.se)
            layers.append(op)
            h, w = op.out_hw
            cin = bc.out_channels
        groups.append(layers)
    return groups


def arch_ops(space: "SearchSpace", arch: "Architecture", input_size: tuple[int, int]
             ) -> list[OpInstance]:
    """All op instances of ``arch`` in execution order (stem first)."""
    return [op for group in block_ops(space, arch, input_size) for op in group]


# ---------------------------------------------------------------------- modules
def make_act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "swish":
        return nn.SiLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
            act: str | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(make_act(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention with a hard-sigmoid gate (quantises better than a sigmoid)."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(torch.relu(self.reduce(s)))
        return x * nn.functional.hardsigmoid(s)


class Layer(nn.Module):
    """One op instance: expansion → spatial conv → (SE) → projection, with residual when shapes allow."""

    def __init__(self, op: OpInstance):
        super().__init__()
        self.op_key = op.key
        self.residual = op.residual
        mid = op.mid if op.has_expand_conv else op.cin
        parts: list[nn.Module] = []
        if op.kind == "ir":
            if op.has_expand_conv:
                parts.append(conv_bn(op.cin, mid, 1, act=op.act))
            parts.append(conv_bn(mid, mid, op.kernel, op.stride, groups=mid, act=op.act))
        elif op.kind == "fused_ir":
            parts.append(conv_bn(op.cin, mid, op.kernel, op.stride, act=op.act))
        elif op.kind == "gconv":
            parts.append(conv_bn(op.cin, mid, 1, act=op.act))
            parts.append(conv_bn(mid, mid, op.kernel, op.stride, groups=mid // GROUP_WIDTH,
                                 act=op.act))
        else:
            raise ValueError(f"unknown op {op.kind!r}")
        if op.se:
            parts.append(SqueezeExcite(mid, op.se_channels))
        parts.append(conv_bn(mid, op.cout, 1))
        self.body = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def make_layer(op: OpInstance) -> nn.Module:
    """The PyTorch module of an op instance (the stem is a plain conv-BN-act)."""
    if op.kind == "stem":
        return conv_bn(op.cin, op.cout, op.kernel, op.stride, act=op.act)
    return Layer(op)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_macs_hooked(module: nn.Module, x: torch.Tensor) -> int:
    """MACs of convolutions and linear layers measured with forward hooks (a check of ``macs``)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * math.prod(mod.kernel_size)
        elif isinstance(mod, nn.Linear):
            total += out.numel() // out.shape[0] * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            module.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return total
