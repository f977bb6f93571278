"""NSR loss (hand-derived values) and elastic weight sharing (sub-networks equal standalone layers)."""

import pytest
import torch

from donna_nas.distill.elastic import ElasticBlock, ElasticLayer, LayerConfig
from donna_nas.distill.nsr import NSRAccumulator, channel_variance, nsr
from donna_nas.nn.ops import make_layer
from donna_nas.space.ops import OpInstance
from donna_nas.space import load_space


def test_nsr_of_teacher_against_itself_is_zero():
    y = torch.randn(4, 6, 5, 7)
    assert nsr(y, y, channel_variance(y)).item() == 0.0


def test_nsr_zero_prediction_of_zero_mean_teacher_is_one_per_channel():
    # channel 0 takes values ±1 (variance 1), channel 1 ±3 (variance 9): both zero-mean, so the
    # squared error of predicting 0 equals the variance, and each channel's ratio is exactly 1.
    y = torch.tensor([[1.0, -1.0], [3.0, -3.0]]).reshape(1, 2, 1, 2)
    var = channel_variance(y)
    assert var.tolist() == pytest.approx([1.0, 9.0])
    assert nsr(torch.zeros_like(y), y, var).item() == pytest.approx(1.0, abs=1e-9)
    # an error of 1 everywhere costs 1/1 on channel 0 and 1/9 on channel 1 → mean 5/9
    assert nsr(y + 1, y, var).item() == pytest.approx((1 + 1 / 9) / 2, rel=1e-6)


def test_nsr_of_channel_means_is_one_for_any_teacher():
    y = torch.rand(3, 4, 6, 6) * torch.tensor([1.0, 5.0, 0.2, 3.0]).view(1, 4, 1, 1) + 2.0
    mean = y.mean(dim=(0, 2, 3), keepdim=True).expand_as(y)
    assert nsr(mean, y, channel_variance(y)).item() == pytest.approx(1.0, rel=1e-5)


def test_nsr_accumulator_matches_one_shot():
    y, p = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    var = channel_variance(y)
    acc = NSRAccumulator(var)
    acc.add(p[:2], y[:2])
    acc.add(p[2:], y[2:])
    assert acc.value() == pytest.approx(nsr(p, y, var).item(), rel=1e-6)


@pytest.mark.parametrize("op", ["ir", "fused_ir", "gconv"])
def test_kernel3_subnetwork_equals_standalone_layer_with_centre_crop(op):
    torch.manual_seed(0)
    el = ElasticLayer(op, "relu", cin_max=16, cout_max=24, mid_max=64, k_max=7, stride=1, with_se=True)
    cfg = LayerConfig(cin=16, cout=24, kernel=3, expand=2, se=True, stride=1)
    ref = make_layer(OpInstance(op, 16, 24, 3, 1, 8, 8, "relu", 2, True))
    mid = 32
    sd = ref.state_dict()
    with torch.no_grad():
        # load the standalone layer by hand: centre 3x3 of the 7x7 kernels, first channels
        body = dict(ref.body.named_children())
        if op == "ir":
            body["0"][0].weight.copy_(el.expand_w[:mid, :16])
            body["1"][0].weight.copy_(el.dw_w[:mid, :, 2:5, 2:5])
            body["1"][1].weight.copy_(el.dw_bn.weight[:mid])
            body["1"][1].bias.copy_(el.dw_bn.bias[:mid])
        elif op == "fused_ir":
            body["0"][0].weight.copy_(el.expand_w[:mid, :16, 2:5, 2:5])
        else:
            body["0"][0].weight.copy_(el.expand_w[:mid, :16])
            body["1"][0].weight.copy_(el.dw_w[:mid, :, 2:5, 2:5])
            body["1"][1].weight.copy_(el.dw_bn.weight[:mid])
            body["1"][1].bias.copy_(el.dw_bn.bias[:mid])
        body["0"][1].weight.copy_(el.expand_bn.weight[:mid])
        body["0"][1].bias.copy_(el.expand_bn.bias[:mid])
        se = ref.body[-2]
        sq = se.reduce.weight.shape[0]
        se.reduce.weight.copy_(el.se_reduce_w[:sq, :mid])
        se.reduce.bias.copy_(el.se_reduce_b[:sq])
        se.expand.weight.copy_(el.se_expand_w[:mid, :sq])
        se.expand.bias.copy_(el.se_expand_b[:mid])
        ref.body[-1][0].weight.copy_(el.project_w[:24, :mid])
        ref.body[-1][1].weight.copy_(el.project_bn.weight[:24])
        ref.body[-1][1].bias.copy_(el.project_bn.bias[:24])
    assert set(el.slices(cfg)) <= set(sd)  # the slices name real parameters of the layer
    x = torch.randn(2, 16, 8, 8)
    el.train(), ref.train()
    torch.testing.assert_close(el(x, cfg), ref(x))
    torch.testing.assert_close(el.export(cfg).train()(x), ref(x))


def test_every_tiny_choice_exports_to_the_same_function():
    space = load_space("tiny")
    torch.manual_seed(1)
    for i, block in enumerate(space.blocks):
        for op in block.choices.op:
            eb = ElasticBlock(space, i, op, "relu").train()
            for ch in (c for c in block.all_choices() if c.op == op):
                x = torch.rand(2, 3, 16, 32) if i == 0 else torch.randn(2, eb.cin_max, 8, 8)
                want = eb(x, ch, eb.cin_max)
                y = eb.stem((x - 0.45) / 0.225) if i == 0 else x
                got = eb.export(ch, eb.cin_max).train()(y)
                torch.testing.assert_close(got, want)


def test_smaller_choices_share_the_first_channels_and_layers():
    space = load_space("donna_depth")
    eb = ElasticBlock(space, 3, "ir", "swish")
    big = next(c for c in space.blocks[3].all_choices()
               if (c.op, c.act, c.kernel, c.expand, c.depth, c.out_channels, c.se) == ("ir", "swish", 7, 6, 4, 128, True))
    small = next(c for c in space.blocks[3].all_choices()
                 if (c.op, c.act, c.kernel, c.expand, c.depth, c.out_channels, c.se) == ("ir", "swish", 3, 2, 2, 80, False))
    b, s = eb.export(big, 64), eb.export(small, 40)
    assert len(b) == 4 and len(s) == 2
    w_big = b[0].body[1][0].weight  # depthwise 7x7 of layer 0
    w_small = s[0].body[1][0].weight  # depthwise 3x3 of layer 0
    mid = w_small.shape[0]
    torch.testing.assert_close(w_small, w_big[:mid, :, 2:5, 2:5])
    torch.testing.assert_close(s[1].body[-1][0].weight, b[1].body[-1][0].weight[:80, :s[1].body[-1][0].weight.shape[1]])
