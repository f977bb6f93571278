"""Block supernets: one set of shared weights for every nested choice of a block (OFA-style).

A DONNA block has ~10³ choices; training each alone does not fit a CPU. Choices that nest share
weights: a kernel k uses the centre k×k crop of the largest kernel, an expansion uses the first
``mid`` hidden channels, a depth d uses the first d layers, an output width c the first c output
channels, and "no SE" skips the SE module. Op type and activation do not nest (different tensors
or different nonlinearities), so each (block, op, act) gets its own supernet.

There is exactly one forward implementation: a sub-network is the ordinary ``nn.nn.ops.Layer`` of
the choice, run with ``torch.func.functional_call`` on *slices* of the shared tensors. Exporting a
choice (``ElasticBlock.export``) loads the same slices into a fresh ``Layer``, so a distilled
sub-network and the assembled architecture compute the same function by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from donna_nas.nn.builder import IMAGE_MEAN, IMAGE_STD
from donna_nas.nn.ops import make_layer
from donna_nas.space.ops import (
    OpInstance,
    in_per_group,
    incoming_widths,
    layer_mid,
    make_divisible,
    op_type,
    stem_op,
)
from donna_nas.space.space import BlockChoice, SearchSpace

__all__ = ["ElasticLayer", "ElasticBlock", "block_input_widths", "layer_mid"]

block_input_widths = incoming_widths
"""Possible input widths of block ``index`` (``donna_nas.space.ops.incoming_widths``)."""


def _crop(w: torch.Tensor, k: int) -> torch.Tensor:
    """Centre k×k crop of a (…, K, K) kernel."""
    K = w.shape[-1]
    a = (K - k) // 2
    return w[..., a:a + k, a:a + k]


class _BN(nn.Module):
    """Affine parameters of a batch norm at the largest width (statistics live in the sub-layer)."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))


def _conv_weight(cout: int, cin: int, k: int) -> nn.Parameter:
    w = torch.empty(cout, cin, k, k)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    return nn.Parameter(w)


@dataclass(frozen=True)
class LayerConfig:
    cin: int
    cout: int
    kernel: int
    expand: float
    se: bool
    stride: int


class ElasticLayer(nn.Module):
    """Shared tensors of one layer position of a block supernet, at the largest sizes."""

    def __init__(self, op: str, act: str, cin_max: int, cout_max: int, mid_max: int, k_max: int,
                 stride: int, with_se: bool):
        super().__init__()
        self.op, self.act, self.stride = op, act, stride
        self.cin_max, self.cout_max, self.mid_max, self.k_max = cin_max, cout_max, mid_max, k_max
        # one shared tensor per conv of the op type's description, at the largest widths
        width = {"in": cin_max, "mid": mid_max, "out": cout_max}
        specs = op_type(op).convs
        for spec in specs:
            if spec is specs[-1] and with_se:
                sq_max = make_divisible(mid_max / 4, 8)
                self.se_reduce_w = nn.Parameter(torch.randn(sq_max, mid_max, 1, 1) * mid_max ** -0.5)
                self.se_reduce_b = nn.Parameter(torch.zeros(sq_max))
                self.se_expand_w = nn.Parameter(torch.randn(mid_max, sq_max, 1, 1) * sq_max ** -0.5)
                self.se_expand_b = nn.Parameter(torch.zeros(mid_max))
            cin = width[spec.cin]
            setattr(self, f"{spec.name}_w", _conv_weight(width[spec.cout], in_per_group(spec, cin),
                                                         k_max if spec.kernel == "k" else 1))
            setattr(self, f"{spec.name}_bn", _BN(width[spec.cout]))
        self._templates: dict[str, nn.Module] = {}

    def op_instance(self, c: LayerConfig, h: int = 1, w: int = 1) -> OpInstance:
        return OpInstance(self.op, c.cin, c.cout, c.kernel, c.stride, h, w, self.act, c.expand, c.se)

    def slices(self, c: LayerConfig) -> dict[str, torch.Tensor]:
        """State-dict entries (parameters only) of the standalone ``Layer`` of config ``c``."""
        op = self.op_instance(c)
        out: dict[str, torch.Tensor] = {}
        convs = op.convs
        for i, conv in enumerate(convs):
            if conv is convs[-1] and c.se:
                mid, sq = op.hidden, op.se_channels
                out[f"body.{i}.reduce.weight"] = self.se_reduce_w[:sq, :mid]
                out[f"body.{i}.reduce.bias"] = self.se_reduce_b[:sq]
                out[f"body.{i}.expand.weight"] = self.se_expand_w[:mid, :sq]
                out[f"body.{i}.expand.bias"] = self.se_expand_b[:mid]
                i += 1
            w = getattr(self, f"{conv.name}_w")[:conv.cout, :conv.cin // conv.groups]
            bn = getattr(self, f"{conv.name}_bn")
            out[f"body.{i}.0.weight"] = _crop(w, conv.kernel)
            out[f"body.{i}.1.weight"] = bn.weight[:conv.cout]
            out[f"body.{i}.1.bias"] = bn.bias[:conv.cout]
        return out

    def template(self, c: LayerConfig) -> nn.Module:
        """A cached standalone layer of config ``c`` (its own parameters are never used)."""
        key = repr(c)
        if key not in self._templates:
            self._templates[key] = make_layer(self.op_instance(c))
        t = self._templates[key]
        t.train(self.training)
        return t

    def forward(self, x: torch.Tensor, c: LayerConfig) -> torch.Tensor:
        return functional_call(self.template(c), self.slices(c), (x,), strict=False)

    def export(self, c: LayerConfig, h: int = 1, w: int = 1) -> nn.Module:
        """A fresh ``Layer`` holding copies of the shared slices (BN statistics reset)."""
        layer = make_layer(self.op_instance(c, h, w))
        with torch.no_grad():
            layer.load_state_dict({k: v.detach().clone() for k, v in self.slices(c).items()},
                                  strict=False)
        return layer


class ElasticBlock(nn.Module):
    """Supernet of one (block, op, act): the stem too for the first block (it takes the image)."""

    def __init__(self, space: SearchSpace, index: int, op: str, act: str):
        super().__init__()
        block = space.blocks[index]
        self.index, self.op, self.act = index, op, act
        self.block_name = block.name
        self.stride = block.stride
        self.cin_options = block_input_widths(space, index)
        opts = block.options()
        self.cout_max = max(block.out_channels)
        k_max = max(opts["kernel"])
        with_se = any(opts["se"])
        self.stem: nn.Module | None = None
        if index == 0:
            self.stem = make_layer(stem_op(space, (1, 1)))
        layers = []
        for d in range(max(opts["depth"])):
            cins = self.cin_options if d == 0 else tuple(block.out_channels)
            mid_max = max(layer_mid(op, cin, e) for cin in cins for e in opts["expand"])
            layers.append(ElasticLayer(op, act, max(cins), self.cout_max, mid_max, k_max,
                                       block.stride if d == 0 else 1, with_se))
        self.layers = nn.ModuleList(layers)

    @property
    def cin_max(self) -> int:
        return max(self.cin_options)

    def configs(self, choice: BlockChoice, cin: int) -> list[LayerConfig]:
        out = []
        for d in range(choice.depth):
            out.append(LayerConfig(cin if d == 0 else choice.out_channels, choice.out_channels,
                                   choice.kernel, choice.expand, choice.se,
                                   self.stride if d == 0 else 1))
        return out

    def forward(self, x: torch.Tensor, choice: BlockChoice, cin: int | None = None) -> torch.Tensor:
        """``x``: the image for the first block, else a feature map with at least ``cin`` channels."""
        if self.stem is not None:
            x = self.stem((x - IMAGE_MEAN) / IMAGE_STD)
            cin = self.cin_options[0]
        cin = cin or self.cin_max
        x = x[:, :cin]
        for layer, cfg in zip(self.layers, self.configs(choice, cin)):
            x = layer(x, cfg)
        return x

    def export(self, choice: BlockChoice, cin: int) -> nn.Sequential:
        """The block's layers for ``choice`` as the builder makes them, with the shared weights."""
        return nn.Sequential(*(layer.export(cfg)
                               for layer, cfg in zip(self.layers, self.configs(choice, cin))))
