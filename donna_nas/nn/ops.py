"""PyTorch modules of op instances: ``make_layer(op)`` builds the layer an ``OpInstance`` describes.

The arithmetic (shapes, widths, params, MACs, latency keys) is torch-free data in
``donna_nas.space.ops``; a layer here is built from the op's conv descriptions
(``OpInstance.convs``), conv-BN(-act) each, with squeeze-excite before the last one. The tests
hold the analytic params/MACs against these modules (``count_params``, ``conv_macs_hooked``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from donna_nas.space.ops import Conv, OpInstance

__all__ = ["Layer", "SqueezeExcite", "conv_bn", "conv_macs_hooked", "count_params", "make_act",
           "make_layer"]


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


def conv_module(c: Conv, act: str) -> nn.Sequential:
    """The conv-BN(-act) of one ``Conv`` description."""
    return conv_bn(c.cin, c.cout, c.kernel, c.stride, groups=c.groups, act=act if c.act else None)


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
    """One op instance: its convs (``OpInstance.convs``), SE before the last one when chosen,
    and a residual connection when shapes allow."""

    def __init__(self, op: OpInstance):
        super().__init__()
        self.op_key = op.key
        self.residual = op.residual
        convs = op.convs
        parts: list[nn.Module] = [conv_module(c, op.act) for c in convs[:-1]]
        if op.se:
            parts.append(SqueezeExcite(op.hidden, op.se_channels))
        parts.append(conv_module(convs[-1], op.act))
        self.body = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def make_layer(op: OpInstance) -> nn.Module:
    """The PyTorch module of an op instance (the stem is a plain conv-BN-act)."""
    if op.kind == "stem":
        return conv_module(op.convs[0], op.act)
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
