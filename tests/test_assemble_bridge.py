"""Bridges: assembling an architecture folds each block boundary's BKD adapters into the next
block's first convolution, so a block reads its predecessor's output in the space it was
distilled on (donna_nas.distill.assemble)."""

import random

import pytest
import torch
from torch import nn

from donna_nas.distill.assemble import assemble, bridge_map, fold_bridge
from donna_nas.distill.bkd import load_bkd_model
from donna_nas.nn.ops import conv_bn
from donna_nas.space import load_space

SPACE = load_space("tiny")


def _random_bn(m: nn.Sequential) -> nn.Sequential:
    bn = m[1]
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return m.eval()


@pytest.mark.parametrize("kernel", [1, 3])
def test_folding_a_bridge_reads_x_as_the_conv_read_the_mapped_input(kernel):
    torch.manual_seed(0)
    m = _random_bn(conv_bn(6, 10, kernel, act="relu"))
    M, b = torch.randn(6, 6), torch.randn(6)
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        want = m(torch.einsum("ij,njhw->nihw", M, x) + b.view(1, 6, 1, 1))
        fold_bridge(m, M, b)
        got = m(x)
    p = kernel // 2  # a k×k conv zero-pads M x + b; the fold is exact away from that border
    inner = (slice(None), slice(None), slice(p, got.shape[2] - p), slice(p, got.shape[3] - p))
    assert torch.allclose(got[inner], want[inner], atol=1e-4)
    if kernel > 1:  # and the border is where it differs (the test would see a wrong constant)
        assert not torch.allclose(got, want, atol=1e-4)


def test_a_depthwise_conv_cannot_take_a_dense_bridge():
    m = conv_bn(6, 6, 3, groups=6)
    with pytest.raises(ValueError, match="dense bias-free conv"):
        fold_bridge(m, torch.eye(6), torch.zeros(6))


@pytest.fixture(scope="module")
def run(tiny_supernet):
    return tiny_supernet


def _one_by_one_first(arch) -> bool:
    """Every block after the first opens with a 1×1 conv (ir / gconv), where the fold is exact."""
    return all(c.op in ("ir", "gconv") for c in arch.block_choices[1:])


def test_each_bridged_block_computes_the_raw_block_on_the_adapted_output(run):
    """Block i of the bridged encoder, fed block i-1's raw output r, equals block i of the raw
    encoder fed A_in_i(A_out_{i-1}(r)) — the input BKD trained it on — for every boundary."""
    rng = random.Random(0)
    arch = next(a for a in (SPACE.sample(rng) for _ in range(200)) if _one_by_one_first(a))
    bridged = assemble(run, arch, recalibrate=False, input_size=(32, 64))
    raw = assemble(run, arch, recalibrate=False, input_size=(32, 64), bridge=False)
    x = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        taps = raw(x)
        for i in range(1, len(arch.block_choices)):
            prev = load_bkd_model(run, SPACE, i - 1, arch.block_choices[i - 1].op, arch.block_choices[i - 1].act)
            cur = load_bkd_model(run, SPACE, i, arch.block_choices[i].op, arch.block_choices[i].act)
            r = taps[i - 1]
            adapted = cur.block_input(prev.head(r))[:, :r.shape[1]]
            assert torch.allclose(bridged.blocks[i](r), raw.blocks[i](adapted), atol=1e-4)
            assert not torch.allclose(bridged.blocks[i](r), raw.blocks[i](r), atol=1e-3)


def test_bridge_map_is_the_composition_of_the_two_adapters(run):
    arch = SPACE.sample(random.Random(5))
    c = arch.block_choices[0].out_channels
    prev = load_bkd_model(run, SPACE, 0, arch.block_choices[0].op, arch.block_choices[0].act)
    cur = load_bkd_model(run, SPACE, 1, arch.block_choices[1].op, arch.block_choices[1].act)
    M, m = bridge_map(prev, cur, c)
    r = torch.randn(3, c, 4, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = cur.block_input(prev.head(r))[:, :c]
    got = torch.einsum("ij,njhw->nihw", M.float(), r) + m.float().view(1, c, 1, 1)
    # relative as well as absolute: the folded map sums in another order than the two layers
    assert M.shape == (c, c) and torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_depth_run_starts_from_bridged_blocks_unless_told_otherwise(run):
    """DepthConfig.bridge reaches the encoder a depth run starts from (default: bridged)."""
    from donna_nas.tasks.depth.run import DepthConfig
    from donna_nas.tasks.depth.train import build_depth_net

    arch = SPACE.sample(random.Random(7))
    cfg = DepthConfig(backbone=arch.encode(), space=str(run), height=64, width=192)
    default = build_depth_net(cfg).encoder.blocks[1][0].body[0][0].weight
    raw = build_depth_net(DepthConfig(**{**cfg.__dict__, "bridge": False})).encoder.blocks[1][0].body[0][0].weight
    want = assemble(run, arch).blocks[1][0].body[0][0].weight
    assert torch.equal(default, want)
    assert torch.equal(raw, assemble(run, arch, bridge=False).blocks[1][0].body[0][0].weight)
    assert not torch.allclose(default, raw)
