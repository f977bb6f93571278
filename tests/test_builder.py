"""Builder: every choice builds with the right tap shapes; analytic params/MACs equal the model's."""

import random

import pytest
import torch

from donna_nas import Block, Choice, SearchSpace, load_space
from donna_nas.nn.ops import conv_macs_hooked, count_params
from donna_nas.space.ops import make_divisible


def _expected_shapes(space, arch, size):
    h, w = size
    out = []
    for stride, c in zip(space.strides(), (bc.out_channels for bc in arch.block_choices)):
        out.append((1, c, -(-h // stride), -(-w // stride)))
    return out


def _smallest(space):
    """Every block at the first (in shipped spaces: cheapest) value of each option."""
    from donna_nas.space import Architecture, BlockChoice

    return Architecture(space.block_names, tuple(
        BlockChoice(**{k: v[0] for k, v in b.options().items()}) for b in space.blocks))


def _coverage_archs(space):
    """One architecture per (block, option, value): every value of every option gets built,
    on top of the smallest architecture so that building stays cheap."""
    base = _smallest(space)
    archs = []
    for i, block in enumerate(space.blocks):
        for key, values in block.options().items():
            for v in values:
                choice = base.block_choices[i].__class__(**{**base.block_choices[i].__dict__, key: v})
                archs.append(base.replace(i, choice))
    return archs


def test_every_block_choice_of_tiny_builds_at_two_sizes():
    space = load_space("tiny")
    rng = random.Random(0)
    for i, block in enumerate(space.blocks):
        for choice in block.all_choices():
            arch = space.sample(rng).replace(i, choice)
            model = space.build(arch).eval()
            assert model.channels == [c.out_channels for c in arch.block_choices]
            for size in ((64, 192), (96, 320)):
                with torch.no_grad():
                    taps = model(torch.rand(1, 3, *size))
                assert [tuple(t.shape) for t in taps] == _expected_shapes(space, arch, size)


def test_every_option_value_of_donna_depth_builds():
    space = load_space("donna_depth")
    x = torch.rand(1, 3, 32, 96)
    for arch in _coverage_archs(space):
        with torch.no_grad():
            taps = space.build(arch).eval()(x)
        assert [tuple(t.shape) for t in taps] == _expected_shapes(space, arch, (32, 96))


@pytest.mark.parametrize("seed", [0, 1])
def test_donna_depth_at_full_size(seed):
    space = load_space("donna_depth")
    arch = space.sample(seed)
    with torch.no_grad():
        taps = space.build(arch).eval()(torch.rand(1, 3, 192, 640))
    assert [tuple(t.shape) for t in taps] == _expected_shapes(space, arch, (192, 640))
    assert [t.shape[2:] for t in taps] == [(96, 320), (48, 160), (24, 80), (12, 40), (6, 20)]


@pytest.mark.parametrize("name", ["donna_depth", "tiny"])
def test_analytic_params_equal_numel(name):
    space = load_space(name)
    rng = random.Random(7)
    for _ in range(25):
        arch = space.sample(rng)
        assert space.params(arch) == count_params(space.build(arch))


def test_analytic_macs_equal_hooked_count():
    space = load_space("donna_depth")
    rng = random.Random(3)
    for _ in range(8):
        arch = space.sample(rng)
        x = torch.rand(1, 3, 64, 160)
        assert space.macs(arch, (64, 160)) == conv_macs_hooked(space.build(arch, ), x)


def _one_block_space(op, stride, expand, se):
    return SearchSpace(name="hand", input_size=(8, 8), stem=dict(channels=8, stride=2, kernel=3),
                       blocks=[Block("b1", stride=stride, out_channels=[8 if stride == 1 else 16],
                                     choices=Choice(op=[op], kernel=[3], expand=[expand], depth=[1],
                                                    se=[se]))])


def test_macs_hand_count_inverted_residual():
    # stem: 3->8, 3x3, stride 2 on 8x8 -> 4x4 output: 3*8*9*16 = 3456
    # ir e2 (mid 16) at 4x4, stride 1: expand 8*16*16=2048, depthwise 16*9*16=2304, project 16*8*16=2048
    space = _one_block_space("ir", 1, 2, False)
    arch = space.sample(0)
    assert space.macs(arch) == 3456 + 2048 + 2304 + 2048
    # params: stem 3*8*9 + 16 (BN); expand 8*16 + 32; dw 16*9 + 32; project 16*8 + 16
    assert space.params(arch) == (216 + 16) + (128 + 32) + (144 + 32) + (128 + 16)


def test_macs_hand_count_fused_with_se():
    # fused_ir e2 (mid 16), stride 2: 4x4 -> 2x2; fused 3x3 conv 8*16*9*4 = 4608; project 16*16*4 = 1024
    # SE: squeeze make_divisible(16/4, 8) = 8 channels -> 16*8 + 8*16 = 256 MACs
    space = _one_block_space("fused_ir", 2, 2, True)
    arch = space.sample(0)
    assert make_divisible(16 / 4, 8) == 8
    assert space.macs(arch) == 3456 + 4608 + 1024 + 256
    assert space.macs(arch) == conv_macs_hooked(space.build(arch), torch.rand(1, 3, 8, 8))


def test_residual_only_when_shapes_match():
    space = load_space("tiny")
    arch = space.decode("b1:ir_d1_k3_e2_c8_relu|b2:ir_d1_k3_e2_c16_relu|b3:ir_d1_k3_e2_c16_relu|"
                        "b4:ir_d2_k3_e2_c24_relu|b5:ir_d1_k3_e2_c32_relu")
    model = space.build(arch)
    flags = [layer.residual for block in model.blocks for layer in block]
    # b1: 8->8 stride 1 (residual); b2..b5 first layers change stride; b4's second layer keeps shape
    assert flags == [True, False, False, False, True, False]


def test_a_new_op_type_is_one_description(monkeypatch):
    """Params, MACs, the module, the latency features and the elastic slices all derive from an
    op type's conv description: registering one (a depthwise-separable op, 'dws') is enough."""
    import numpy as np

    from donna_nas.distill.elastic import ElasticLayer, LayerConfig
    from donna_nas.latency.model import op_features
    from donna_nas.nn.ops import make_layer
    from donna_nas.space import ops as space_ops
    from donna_nas.space.ops import ConvSpec, OpInstance, OpType

    dws = OpType("dws", (ConvSpec("dw", "in", "in", "k", "depthwise"),
                         ConvSpec("project", "in", "out", 1, act=False)))
    monkeypatch.setitem(space_ops.OP_TYPES, "dws", dws)
    op = OpInstance("dws", 16, 24, 5, 2, 12, 20, "hswish", expand=1, se=True)
    layer = make_layer(op)
    # dw 16*25 + 2*16, SE (mid 16 -> make_divisible(4, 8) = 8) 16*8+8+8*16+16, project 16*24 + 2*24
    assert op.params == 432 + 280 + 432 == count_params(layer)
    assert op.macs == 16 * 25 * 60 + 2 * 16 * 8 + 16 * 24 * 60 == conv_macs_hooked(layer, torch.rand(1, 16, 12, 20))
    f = dict(zip(("dense", "spatial", "memory", "swish", "hswish", "se", "calls"), op_features(op)))
    assert f["spatial"] == 16 * 25 * 60 and f["dense"] == 16 * 24 * 60 and f["hswish"] == 16 * 60
    assert f["memory"] == 16 * 240 + 16 * 60 + 24 * 60 and f["se"] == 16 * 60
    torch.manual_seed(0)
    elastic = ElasticLayer("dws", "hswish", 16, 32, 16, 7, 2, with_se=True)
    assert elastic.dw_w.shape == (16, 1, 7, 7) and elastic.project_w.shape == (32, 16, 1, 1)
    cfg = LayerConfig(16, 24, 5, 1, True, 2)
    x = torch.randn(2, 16, 12, 20)
    exported = elastic.export(cfg).eval()
    assert count_params(exported) == op.params
    with torch.no_grad():
        np.testing.assert_allclose(elastic.eval()(x, cfg).numpy(), exported(x).numpy(), rtol=1e-5, atol=1e-6)


def test_unknown_op_type_is_refused():
    from donna_nas.space.ops import OpInstance

    with pytest.raises(ValueError, match="unknown op 'nope'"):
        OpInstance("nope", 8, 8, 3, 1, 4, 4, "relu").params
